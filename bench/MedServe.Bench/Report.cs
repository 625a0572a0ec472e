using System.Globalization;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace MedServe.Bench;

/// <summary>One measured configuration; ratios are filled in when the report is built.</summary>
internal sealed record Result
{
    public required string Model { get; init; }
    public required string Server { get; init; }
    public required string Transport { get; init; }
    public string Batching { get; init; } = "n/a";
    public int Concurrency { get; init; }
    public int RowsPerRequest { get; init; } = 1;
    public long Requests { get; init; }
    public long Errors { get; init; }
    public string? FirstError { get; init; }
    public double Seconds { get; init; }
    public double RequestsPerSecond { get; init; }
    public double RowsPerSecond { get; init; }
    public double P50Ms { get; init; }
    public double P95Ms { get; init; }
    public double P99Ms { get; init; }
    public long? ServerRequests { get; init; }
    public double? ServerRequestMeanMs { get; init; }
    public long? ServerRuns { get; init; }
    public double? ServerComputeMeanMs { get; init; }
    public double? ServerRowsPerRun { get; init; }
    public double? ComputeP50Ms { get; init; }
    public double? QueueP50Ms { get; init; }
    public double? QueueMeanMs { get; init; }
    public double? ResponseBatchMean { get; init; }
    /// <summary>The server process's CPU time (utime + stime) over the measured window, seconds; null for raw ONNX Runtime.</summary>
    public double? ServerCpuSeconds { get; init; }
    public double? ServerCpuUsPerRequest { get; init; }
    public string Check { get; init; } = "ok";
    public double? XCeiling { get; set; }
    public double? XNaive { get; set; }
    public double? P50XNaive { get; set; }
    public double? P99XNaive { get; set; }
    /// <summary>Server CPU per request over the naive server's (lower is better).</summary>
    public double? CpuXNaive { get; set; }

    public bool IsRaw => Server.StartsWith("raw", StringComparison.Ordinal);

    /// <summary>
    /// One row from two runs of the same configuration (the naive server's halves): counts, time and CPU add up;
    /// percentiles are the mean of the two (each half's own percentile).
    /// </summary>
    public static Result Pool(Result a, Result b)
    {
        var requests = a.Requests + b.Requests;
        var seconds = a.Seconds + b.Seconds;
        var cpu = a.ServerCpuSeconds + b.ServerCpuSeconds;
        return a with
        {
            Requests = requests,
            Errors = a.Errors + b.Errors,
            FirstError = a.FirstError ?? b.FirstError,
            Seconds = seconds,
            RequestsPerSecond = requests / seconds,
            RowsPerSecond = requests * a.RowsPerRequest / seconds,
            P50Ms = (a.P50Ms + b.P50Ms) / 2,
            P95Ms = (a.P95Ms + b.P95Ms) / 2,
            P99Ms = (a.P99Ms + b.P99Ms) / 2,
            ServerCpuSeconds = cpu,
            ServerCpuUsPerRequest = cpu is { } c && requests > 0 ? c * 1e6 / requests : null,
            Check = a.Check != "ok" ? a.Check : b.Check,
        };
    }

    public string Label => IsRaw
        ? $"raw ONNX Runtime, batch {RowsPerRequest}"
        : $"{Server} {Transport}" + (Batching == "n/a" ? "" : $", batching {Batching}");

    /// <summary>Server compute per request: per response where the server says it, else the /metrics mean per run.</summary>
    public double? ServerComputeMs => ComputeP50Ms ?? ServerComputeMeanMs;
}

internal sealed record OnOff(string Model, string Transport, int Concurrency, double RowsPerSecondOff, double RowsPerSecondOn, double? OnOverOff, double? RowsPerRunOn, string Verdict);

internal sealed record Target(string Name, string Configuration, double? Measured, double Needed, bool HigherIsBetter, string Unit, string Verdict);

internal static class Report
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static (string Markdown, string Json) Build(BenchOptions o, Workload[] workloads, List<Result> results, List<string> notes, DateTime stamp)
    {
        var ceilings = new Dictionary<string, Result>();
        foreach (var w in workloads)
        {
            var raw = results.Where(r => r.Model == w.Name && r.IsRaw).ToArray();
            if (raw.Length > 0)
            {
                ceilings[w.Name] = raw.MaxBy(r => r.RowsPerSecond)!;
            }
        }
        foreach (var r in results)
        {
            if (ceilings.TryGetValue(r.Model, out var ceiling))
            {
                r.XCeiling = r.RowsPerSecond / ceiling.RowsPerSecond;
            }
            if (!r.IsRaw && Naive(results, r) is { } n)
            {
                r.XNaive = r.RowsPerSecond / n.RowsPerSecond;
                r.P50XNaive = r.P50Ms / n.P50Ms;
                r.P99XNaive = r.P99Ms / n.P99Ms;
                r.CpuXNaive = r.ServerCpuUsPerRequest / n.ServerCpuUsPerRequest;
            }
        }
        var targets = Targets(results, workloads);
        var onOff = BatchingOnOff(results);

        var md = new StringBuilder();
        md.AppendLine(Inv, $"# MedServe bench{(o.Label is null ? "" : $" ({o.Label})")}: {stamp:yyyy-MM-dd HH:mm} UTC");
        md.AppendLine();
        md.AppendLine(string.Create(Inv, $"{o.Seconds:0.##} s per configuration after {o.Warmup:0.##} s warm-up at the same concurrency; closed loop, concurrency {string.Join(", ", o.Concurrency)}. ") +
            string.Create(Inv, $"{Environment.ProcessorCount} cores ({RuntimeInformation.OSDescription.Trim()}, .NET {Environment.Version}), **shared by the load generator and the server under test** ") +
            "(each server in its own process, loaded one at a time while the others idle; raw ONNX Runtime runs in the load process before any server starts). " +
            string.Create(Inv, $"At each concurrency the naive server runs half its time ({o.NaiveHalfSeconds:0} s per encoding) before MedServe's runs and half after; its row pools the two. ") +
            string.Create(Inv, $"Batching on = `max_batch_size` {o.BatchMax}, `max_queue_delay_microseconds` {o.BatchDelayMicroseconds}{(o.BatchRuns > 0 ? $", `max_concurrent_runs` {o.BatchRuns}" : "")}; off = `max_batch_size` 1."));
        md.AppendLine();
        md.AppendLine("Ratios: **x ceiling** = rows/s over the best raw ONNX Runtime rows/s for the model; **x naive** = rows/s over the naive " +
            "server's at the same concurrency and encoding (grain client: naive binary); **p50/p99 x naive** = latency over the naive server's (lower is better). " +
            string.Create(Inv, $"**srv CPU µs/req** = the server process's CPU time (user + system, /proc/<pid>/stat, {1e3 / ProcessCpu.Hz:0.#} ms ticks) over the measured window, per request answered; ") +
            "**CPU x naive** = that over the naive server's (lower is better). " +
            "Server columns come from the node's `/metrics` (diff of histogram sums and counts around the measured window: means) " +
            "and, for the grain client, from each response (p50).");
        foreach (var w in workloads)
        {
            md.AppendLine();
            md.AppendLine(Inv, $"## {w.Name}: {w.Description}");
            md.AppendLine();
            var rows = results.Where(r => r.Model == w.Name).ToArray();
            if (ceilings.TryGetValue(w.Name, out var c))
            {
                var one = rows.FirstOrDefault(r => r.IsRaw && r.RowsPerRequest == 1);
                md.AppendLine(string.Create(Inv, $"Inputs: {w.DataSource}. Ceiling: **{c.RowsPerSecond:0} rows/s** (raw ONNX Runtime, batch {c.RowsPerRequest}, {c.Concurrency} threads x 1 intra-op thread)") +
                    (one is null ? "." : string.Create(Inv, $"; batch 1: {one.RowsPerSecond:0} rows/s, p50 {one.P50Ms:0.000} ms per Run.")));
                md.AppendLine();
            }
            md.AppendLine("| configuration | c | req/s | rows/s | p50 ms | p95 ms | p99 ms | x ceiling | x naive | p50 x naive | p99 x naive | srv CPU µs/req | CPU x naive | srv request ms | srv compute ms | queue ms | rows/run | errors | check |");
            md.AppendLine("|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|---|");
            foreach (var r in rows)
            {
                var queue = r.QueueP50Ms is { } q ? F(q, "0.000") : "";
                var perRun = r.ServerRowsPerRun ?? r.ResponseBatchMean;
                md.AppendLine(Inv, $"| {r.Label} | {r.Concurrency} | {r.RequestsPerSecond:0} | {r.RowsPerSecond:0} | {r.P50Ms:0.000} | {r.P95Ms:0.000} | {r.P99Ms:0.000} | " +
                    $"{X(r.XCeiling)} | {X(r.XNaive)} | {X(r.P50XNaive)} | {X(r.P99XNaive)} | {F(r.ServerCpuUsPerRequest, "0")} | {X(r.CpuXNaive)} | {F(r.ServerRequestMeanMs, "0.000")} | {F(r.ServerComputeMs, "0.000")} | {queue} | {F(perRun, "0.0")} | " +
                    $"{(r.Errors == 0 ? "0" : r.Errors.ToString(Inv))} | {r.Check} |");
            }
        }

        md.AppendLine();
        md.AppendLine("## Targets (evaluated, not asserted)");
        md.AppendLine();
        md.AppendLine("| target | configuration | measured | needed | verdict |");
        md.AppendLine("|---|---|--:|--:|---|");
        foreach (var t in targets)
        {
            md.AppendLine(Inv, $"| {t.Name} | {t.Configuration} | {(t.Measured is { } m ? m.ToString(t.Unit == "x" ? "0.00" : "0.000", Inv) + (t.Unit == "x" ? "x" : " ms") : "n/a")} | " +
                $"{(t.HigherIsBetter ? ">=" : "<=")} {t.Needed.ToString("0.0##", Inv)}{(t.Unit == "x" ? "x" : " ms")} | {t.Verdict} |");
        }

        if (onOff.Count > 0)
        {
            md.AppendLine();
            md.AppendLine("## Batching on vs off (MedServe)");
            md.AppendLine();
            md.AppendLine("rows/s with batching on over rows/s with it off, same model, transport and concurrency; \"slower\" below 0.95x.");
            md.AppendLine();
            md.AppendLine("| model | transport | c | rows/s off | rows/s on | on / off | rows/run on | verdict |");
            md.AppendLine("|---|---|--:|--:|--:|--:|--:|---|");
            foreach (var b in onOff)
            {
                md.AppendLine(Inv, $"| {b.Model} | {b.Transport} | {b.Concurrency} | {b.RowsPerSecondOff:0} | {b.RowsPerSecondOn:0} | {X(b.OnOverOff)} | {F(b.RowsPerRunOn, "0.0")} | {b.Verdict} |");
            }
        }

        var traced = results.Where(r => r.Server.StartsWith("MedServe traced", StringComparison.Ordinal)).ToArray();
        if (traced.Length > 0)
        {
            md.AppendLine();
            md.AppendLine("## Tracing: traced node vs untraced node, side by side");
            md.AppendLine();
            md.AppendLine("Each traced node exports its sampled spans over OTLP (HTTP/protobuf) to a receiver in the load process. Cost = 1 - traced req/s / untraced req/s " +
                "at the same model, transport, batching and concurrency (negative: the traced node was faster, i.e. noise). Target: under 5%.");
            md.AppendLine();
            md.AppendLine("| model | traced node | transport | batching | c | untraced req/s | traced req/s | cost | p50 untraced ms | p50 traced ms | verdict |");
            md.AppendLine("|---|---|---|---|--:|--:|--:|--:|--:|--:|---|");
            foreach (var t in traced)
            {
                var plain = results.FirstOrDefault(r => r.Server == "MedServe" && r.Model == t.Model && r.Transport == t.Transport && r.Batching == t.Batching && r.Concurrency == t.Concurrency);
                if (plain is null || plain.RequestsPerSecond <= 0)
                {
                    continue;
                }
                var cost = 1 - (t.RequestsPerSecond / plain.RequestsPerSecond);
                md.AppendLine(Inv, $"| {t.Model} | {t.Server} | {t.Transport} | {t.Batching} | {t.Concurrency} | {plain.RequestsPerSecond:0} | {t.RequestsPerSecond:0} | {cost * 100:0.0}% | " +
                    $"{plain.P50Ms:0.000} | {t.P50Ms:0.000} | {(cost <= 0.05 ? "PASS" : "MISS")} |");
            }
            var summary = traced.GroupBy(t => t.Server).Select(g =>
            {
                var ratios = g.Select(t => results.FirstOrDefault(r => r.Server == "MedServe" && r.Model == t.Model && r.Transport == t.Transport && r.Batching == t.Batching && r.Concurrency == t.Concurrency) is { RequestsPerSecond: > 0 } p
                    ? t.RequestsPerSecond / p.RequestsPerSecond : double.NaN).Where(x => !double.IsNaN(x)).ToArray();
                return ratios.Length == 0 ? null : string.Create(Inv, $"{g.Key}: geometric mean cost {(1 - Math.Exp(ratios.Average(Math.Log))) * 100:0.0}% over {ratios.Length} configurations");
            }).OfType<string>();
            md.AppendLine();
            foreach (var line in summary)
            {
                md.AppendLine("- " + line);
            }
        }

        md.AppendLine();
        md.AppendLine("## Lone request: concurrency 1, batching on vs off");
        md.AppendLine();
        md.AppendLine("A lone request should not wait for a batch to fill: \"on\" should cost about what \"off\" costs (no fixed delay of " +
            $"{o.BatchDelayMicroseconds / 1000.0:0.###} ms).");
        md.AppendLine();
        md.AppendLine("| model | transport | p50 off ms | p50 on ms | Δ p50 ms | p99 off ms | p99 on ms | Δ p99 ms | queue p50 on ms | verdict |");
        md.AppendLine("|---|---|--:|--:|--:|--:|--:|--:|--:|---|");
        foreach (var w in workloads)
        {
            foreach (var transport in new[] { "HTTP JSON", "HTTP binary", "grain client" })
            {
                var off = results.FirstOrDefault(r => r.Model == w.Name && r.Server == "MedServe" && r.Transport == transport && r.Batching == "off" && r.Concurrency == 1);
                var on = results.FirstOrDefault(r => r.Model == w.Name && r.Server == "MedServe" && r.Transport == transport && r.Batching == "on" && r.Concurrency == 1);
                if (off is null || on is null)
                {
                    continue;
                }
                var spike = on.P50Ms - off.P50Ms > 0.5 * o.BatchDelayMicroseconds / 1000.0;
                md.AppendLine(Inv, $"| {w.Name} | {transport} | {off.P50Ms:0.000} | {on.P50Ms:0.000} | {on.P50Ms - off.P50Ms:+0.000;-0.000} | {off.P99Ms:0.000} | {on.P99Ms:0.000} | " +
                    $"{on.P99Ms - off.P99Ms:+0.000;-0.000} | {F(on.QueueP50Ms, "0.000")} | {(spike ? "SPIKE: p50 grew by over half the queue delay" : "no spike")} |");
            }
        }

        md.AppendLine();
        md.AppendLine("## Notes");
        md.AppendLine();
        foreach (var n in notes)
        {
            md.AppendLine("- " + n);
        }
        md.AppendLine(o.Load == "wrk"
            ? "- HTTP load: `wrk` (one thread, C, epoll), each connection sending the workload's bodies in turn; latency percentiles are wrk's. Grain-client load: this .NET process (closed loop, N tasks)."
            : "- HTTP and grain-client load: this .NET process (closed loop, N tasks over SocketsHttpHandler); its thread pool spins on the cores the server uses, which weighs most at one connection (bench/README).");
        md.AppendLine("- The load generator runs on the same cores as the server, so HTTP figures are a floor on what the server does with the machine to itself; " +
            "compare configurations within one run, not across runs or machines.");
        md.AppendLine(Inv, $"- Raw ONNX Runtime rows: c is the number of threads ({o.RawWorkers}), each calling Run in a loop on one shared session (1 intra-op thread, no spinning, as MedServe's sessions); latency is per Run.");
        md.AppendLine(Inv, $"- The naive server uses ONNX Runtime's default session options{(o.NaiveIntraOpThreads is { } nt ? $" with {nt} intra-op threads" : "")} and NamedOnnxValue/DenseTensor, as a user would.");
        if (o.Load == "wrk")
        {
            md.AppendLine("- wrk reads no response bodies: HTTP rows show server compute as the /metrics mean per run and no queue time; the grain client's come from each `InferenceResponse`. Each HTTP configuration's answer is checked against raw ONNX Runtime by one request before the load (check column).");
        }
        else if (!results.Any(r => r.Server == "MedServe" && r.Transport != "grain client" && r.QueueP50Ms is not null))
        {
            md.AppendLine("- MedServe's V2 HTTP responses carried no queue or compute time in `parameters`, so HTTP rows show server compute as the /metrics mean per run and no queue time; the grain client's come from each `InferenceResponse`.");
        }
        md.AppendLine(Inv, $"- srv CPU µs/req counts every thread of the server process over the window (GC, timers and, for the naive server, ONNX Runtime's spinning intra-op threads included); one reading is good to a tick ({1e3 / ProcessCpu.Hz:0.#} ms).");
        md.AppendLine("- srv compute ms is ONNX Runtime time per run (one run serves rows/run requests); srv request ms is the HTTP front end's time per request (not recorded for the grain client).");
        var errors = results.Where(r => r.Errors > 0 || r.Check != "ok").ToArray();
        foreach (var r in errors)
        {
            md.AppendLine(Inv, $"- {r.Model} {r.Label} c={r.Concurrency}: {r.Errors} errors (first: {r.FirstError}); check: {r.Check}");
        }

        var json = JsonSerializer.Serialize(new
        {
            stamp,
            options = o,
            machine = new { cores = Environment.ProcessorCount, os = RuntimeInformation.OSDescription, dotnet = Environment.Version.ToString() },
            notes,
            ceilings = ceilings.ToDictionary(kv => kv.Key, kv => new { rows_per_second = kv.Value.RowsPerSecond, batch = kv.Value.RowsPerRequest, threads = kv.Value.Concurrency }),
            results,
            targets,
            batching_on_vs_off = onOff,
        }, new JsonSerializerOptions
        {
            WriteIndented = true,
            PropertyNamingPolicy = JsonNamingPolicy.SnakeCaseLower,
            Encoder = System.Text.Encodings.Web.JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
            NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals,
        });
        return (md.ToString(), json);
    }

    /// <summary>The naive server's figure to compare with: same model, concurrency and encoding (grain client: binary).</summary>
    private static Result? Naive(List<Result> results, Result r)
    {
        var transport = r.Transport == "grain client" ? "HTTP binary" : r.Transport;
        return results.FirstOrDefault(n => n.Server == "naive ASP.NET" && n.Model == r.Model && n.Concurrency == r.Concurrency && n.Transport == transport && n.Errors < n.Requests);
    }

    /// <summary>
    /// The issue's targets, each for batching on and off: throughput vs the naive server at c=32, latency at c=1, and
    /// server CPU per request for every MedServe configuration in the run.
    /// </summary>
    private static List<Target> Targets(List<Result> results, Workload[] workloads)
    {
        const string Logreg = "breast-cancer-logreg", Cnn = "ct-mr-classifier";
        var list = new List<Target>();
        Result? Find(string model, string transport, string batching, int c) =>
            results.FirstOrDefault(r => r.Model == model && r.Server == "MedServe" && r.Transport == transport && r.Batching == batching && r.Concurrency == c);
        string Short(string model) => workloads.FirstOrDefault(w => w.Name == model)?.Key ?? model;
        foreach (var batching in new[] { "on", "off" })
        {
            var lrJson = Find(Logreg, "HTTP JSON", batching, 32);
            list.Add(Ratio("logreg c=32: HTTP JSON vs naive (JSON), rows/s", lrJson, lrJson?.XNaive, 1.0, higherIsBetter: true));
            var lrGrain = Find(Logreg, "grain client", batching, 32);
            list.Add(Ratio("logreg c=32: grain client vs naive (binary), rows/s", lrGrain, lrGrain?.XNaive, 1.5, higherIsBetter: true));
            var cnn = Find(Cnn, "HTTP binary", batching, 32);
            list.Add(Ratio("CNN c=32: HTTP binary vs naive (binary), rows/s", cnn, cnn?.XNaive, 1.1, higherIsBetter: true));
            foreach (var w in workloads)
            {
                foreach (var transport in new[] { "HTTP JSON", "HTTP binary", "grain client" })
                {
                    var one = Find(w.Name, transport, batching, 1);
                    list.Add(Ratio($"{w.Key} c=1: p50 vs naive ({(transport == "HTTP JSON" ? "JSON" : "binary")})", one, one?.P50XNaive, 1.2, higherIsBetter: false));
                }
            }
            foreach (var r in results.Where(r => r.Server == "MedServe" && r.Batching == batching))
            {
                var naive = r.CpuXNaive is null ? null : r.ServerCpuUsPerRequest / r.CpuXNaive;
                var detail = r.ServerCpuUsPerRequest is { } us && naive is { } n ? string.Create(Inv, $"; {us:0} vs {n:0} µs/req") : null;
                list.Add(Ratio($"{Short(r.Model)} c={r.Concurrency}: server CPU/request vs naive", r, r.CpuXNaive, 1.3, higherIsBetter: false, detail));
            }
        }
        return list;
    }

    private static Target Ratio(string name, Result? r, double? value, double needed, bool higherIsBetter, string? detail = null)
    {
        var verdict = value is not { } v ? "n/a (not measured)"
            : higherIsBetter ? (v >= needed ? string.Create(Inv, $"PASS ({v:0.00}x{detail})") : string.Create(Inv, $"MISS by {(1 - v / needed) * 100:0}% ({v:0.00}x of {needed:0.0}x{detail})"))
            : v <= needed ? string.Create(Inv, $"PASS ({v:0.00}x{detail})") : string.Create(Inv, $"MISS by {(v / needed - 1) * 100:0}% ({v:0.00}x of {needed:0.0}x{detail})");
        return new Target(name, r?.Label ?? "(not in this run)", value, needed, higherIsBetter, "x", verdict);
    }

    /// <summary>MedServe's rows/s with batching on over off, per model, transport and concurrency (both modes in the run).</summary>
    private static List<OnOff> BatchingOnOff(List<Result> results)
    {
        var list = new List<OnOff>();
        foreach (var off in results.Where(r => r.Server == "MedServe" && r.Batching == "off"))
        {
            var on = results.FirstOrDefault(r => r.Server == "MedServe" && r.Batching == "on" && r.Model == off.Model && r.Transport == off.Transport && r.Concurrency == off.Concurrency);
            if (on is null)
            {
                continue;
            }
            double? ratio = off.RowsPerSecond > 0 ? on.RowsPerSecond / off.RowsPerSecond : null;
            list.Add(new OnOff(off.Model, off.Transport, off.Concurrency, off.RowsPerSecond, on.RowsPerSecond, ratio,
                on.ServerRowsPerRun ?? on.ResponseBatchMean, ratio is not { } x ? "n/a" : x < 0.95 ? "slower" : "ok"));
        }
        return [.. list.OrderBy(b => b.Model, StringComparer.Ordinal).ThenBy(b => TransportOrder(b.Transport)).ThenBy(b => b.Concurrency)];
    }

    private static int TransportOrder(string t) => t switch { "HTTP JSON" => 0, "HTTP binary" => 1, _ => 2 };

    private static string X(double? v) => v is { } x ? x.ToString(x < 0.1 ? "0.000" : "0.00", Inv) + "x" : "";

    private static string F(double? v, string format) => v is { } x ? x.ToString(format, Inv) : "";
}
