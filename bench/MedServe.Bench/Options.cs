using System.Globalization;

namespace MedServe.Bench;

/// <summary>
/// Command line: <c>[seconds-per-config] [concurrency,...] [--warmup s] [--server-warmup s] [--models logreg,cnn] [--raw-batches 1,8,32,128]
/// [--raw-workers n] [--naive-intra-op-threads n] [--batch-max n] [--batch-delay-us n] [--batch-runs n] [--batching off,on] [--tracing off,0.1,1]
/// [--data-dir dir] [--label text] [--node-args "..."]</c>.
/// </summary>
internal sealed record BenchOptions
{
    public double Seconds { get; init; } = 8;
    public int[] Concurrency { get; init; } = [1, 8, 32, 128];
    public double Warmup { get; init; } = 1;
    public double ServerWarmup { get; init; } = 3;
    public string[] Models { get; init; } = ["logreg", "cnn"];
    public int[] RawBatches { get; init; } = [1, 8, 32, 128];
    public int RawWorkers { get; init; } = Environment.ProcessorCount;
    public int? NaiveIntraOpThreads { get; init; }
    public int BatchMax { get; init; } = 8; // the product default (BatchingPolicy)
    public int BatchDelayMicroseconds { get; init; }
    public int BatchRuns { get; init; } // max_concurrent_runs for "on"; 0, the product default, leaves it out
    public string DataDir { get; init; } = "/work/shared/data";
    public string? Label { get; init; }
    /// <summary>Seconds of each of the naive server's two halves around MedServe's runs (wrk takes whole seconds).</summary>
    public double NaiveHalfSeconds => Math.Max(1, Math.Round(Seconds / 2));
    /// <summary>What sends the HTTP load: wrk (the default where it is installed) or this .NET process. The grain client is always this process.</summary>
    public string Load { get; init; } = WrkRunner.Executable is null ? "dotnet" : "wrk";
    /// <summary>Extra arguments for the MedServe node (e.g. <c>--MedServe:AuditInference false</c> to measure what auditing costs).</summary>
    public string[] NodeArgs { get; init; } = [];
    /// <summary>Batching modes to run MedServe in (<c>off</c>, <c>on</c>), alternated at each concurrency.</summary>
    public string[] Batching { get; init; } = ["off", "on"];
    /// <summary>
    /// MedServe nodes to run side by side: <c>off</c> (tracing off, the plain node) and/or sample ratios (tracing on,
    /// <c>MedServe:Tracing:SampleRatio</c>, spans exported over OTLP to a receiver in this process). Each is its own node
    /// process, all started at once and loaded in turn, alternating their order at each concurrency.
    /// </summary>
    public string[] Tracing { get; init; } = ["off"];

    public static BenchOptions Parse(string[] args)
    {
        var o = new BenchOptions();
        var positional = 0;
        for (var i = 0; i < args.Length; i++)
        {
            var a = args[i];
            string Next() => i + 1 < args.Length ? args[++i] : throw new ArgumentException($"{a} needs a value");
            o = a switch
            {
                "--warmup" => o with { Warmup = D(Next()) },
                "--server-warmup" => o with { ServerWarmup = D(Next()) },
                "--models" => o with { Models = Next().Split(',', StringSplitOptions.RemoveEmptyEntries) },
                "--raw-batches" => o with { RawBatches = Ints(Next()) },
                "--raw-workers" => o with { RawWorkers = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--naive-intra-op-threads" => o with { NaiveIntraOpThreads = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--batch-max" => o with { BatchMax = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--batch-delay-us" => o with { BatchDelayMicroseconds = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--batch-runs" => o with { BatchRuns = int.Parse(Next(), CultureInfo.InvariantCulture) },
                "--data-dir" => o with { DataDir = Next() },
                "--label" => o with { Label = Next() },
                "--load" => o with { Load = Modes(Next(), "wrk", "dotnet") is [var l] ? l : throw new ArgumentException("--load: one of wrk, dotnet") },
                "--node-args" => o with { NodeArgs = Next().Split(' ', StringSplitOptions.RemoveEmptyEntries) },
                "--batching" => o with { Batching = Modes(Next(), "off", "on") },
                "--tracing" => o with { Tracing = TracingModes(Next()) },
                _ when a.StartsWith("--", StringComparison.Ordinal) => throw new ArgumentException($"unknown option {a}"),
                _ when positional++ == 0 => o with { Seconds = D(a) },
                _ when positional == 2 => o with { Concurrency = Ints(a) },
                _ => throw new ArgumentException($"unexpected argument {a}"),
            };
        }
        return o;
    }

    private static string[] Modes(string s, params string[] allowed)
    {
        var modes = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        return modes.Length > 0 && modes.All(allowed.Contains) ? modes : throw new ArgumentException($"'{s}': expected {string.Join(" and/or ", allowed)}");
    }

    private static string[] TracingModes(string s)
    {
        var modes = s.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        foreach (var m in modes)
        {
            if (m != "off" && !(double.TryParse(m, NumberStyles.Float, CultureInfo.InvariantCulture, out var r) && r is >= 0 and <= 1))
            {
                throw new ArgumentException($"--tracing '{m}': expected off or a sample ratio between 0 and 1");
            }
        }
        return modes.Length > 0 ? modes : throw new ArgumentException("--tracing needs off and/or ratios");
    }

    /// <summary>The server label of a tracing mode: plain "MedServe" when off (the targets read it).</summary>
    public static string ServerName(string tracing) =>
        tracing == "off" ? "MedServe" : string.Create(CultureInfo.InvariantCulture, $"MedServe traced {double.Parse(tracing, CultureInfo.InvariantCulture) * 100:0.##}%");

    private static double D(string s) => double.Parse(s, CultureInfo.InvariantCulture);

    private static int[] Ints(string s) => [.. s.Split(',', StringSplitOptions.RemoveEmptyEntries).Select(x => int.Parse(x, CultureInfo.InvariantCulture))];
}
