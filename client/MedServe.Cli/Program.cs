using MedServe.Cli;

// medserve: the command line of a MedServe cluster. Everything is in MedServeCli, so tests run it in-process.
return await MedServeCli.RunAsync(args, Console.Out, Console.Error);
