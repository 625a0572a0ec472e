using BenchmarkDotNet.Running;

// dotnet run -c Release --project bench/MedServe.Micro -- --filter '*'   (or e.g. --filter '*Codec*')
BenchmarkSwitcher.FromAssembly(typeof(Program).Assembly).Run(args);
