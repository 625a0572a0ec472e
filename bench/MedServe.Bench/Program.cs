using System.Diagnostics;
using System.Globalization;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json;
using MedServe;
using MedServe.Bench;
using MedServe.Client;
using Microsoft.ML.OnnxRuntime;

// The side-by-side bench: for each model, raw ONNX Runtime in this process (the ceiling), then a naive ASP.NET Core
// server and the MedServe node, each in its own process, loaded from this one (closed loop, N workers, fixed time
// after a warm-up). Writes bench/results/bench-<stamp>.{md,json} and prints the markdown.
// Usage: dotnet bench/MedServe.Bench/bin/Release/net10.0/MedServe.Bench.dll [seconds] [concurrency,...] [options]
// (bench/run.sh builds and runs it; see BenchOptions for the options).
var options = BenchOptions.Parse(args);
if (options.Load == "wrk" && WrkRunner.Executable is null)
{
    Console.Error.WriteLine("bench: --load wrk needs wrk on PATH (Debian: apt-get install wrk); or --load dotnet");
    return 2;
}
var repo = FindRepo();
var workloads = options.Models.Select(m => Workload.Load(repo, m, options.DataDir)).ToArray();
var results = new List<Result>();
var notes = new List<string>();
var stamp = DateTime.UtcNow;
var logDir = Directory.CreateTempSubdirectory("medserve-bench-logs").FullName;
var maxC = options.Concurrency.Max();
var plan = workloads.Length * (options.RawBatches.Length + options.Concurrency.Length * (2 + 3 * options.Batching.Length * options.Tracing.Length));
var estimate = plan * (options.Seconds + options.Warmup) + workloads.Length * 5 * options.ServerWarmup + 40;
Console.Error.WriteLine($"bench: {plan} configurations x ({options.Seconds:0.#} s + {options.Warmup:0.#} s warm-up), about {estimate / 60:0.0} min with start-up; server logs in {logDir}");

// 1. The ceiling: raw ONNX Runtime in this process, before any server runs.
foreach (var w in workloads)
{
    Raw(w);
}

// 2. What a user would write instead: the naive ASP.NET Core server. It stays up (idle) while MedServe is measured: at
// each concurrency it runs half its time before MedServe's runs and half after, and its row pools the two halves, so
// a drift in the machine over the minutes between them moves both servers alike instead of favouring one.
var naivePort = ChildServer.FreePort();
var naiveArgs = new List<string> { "--urls", $"http://127.0.0.1:{naivePort}", "--models", string.Join(',', workloads.Select(w => $"{w.Name}={w.OnnxPath}")) };
if (options.NaiveIntraOpThreads is { } intraOp)
{
    naiveArgs.AddRange(["--intra-op-threads", intraOp.ToString(CultureInfo.InvariantCulture)]);
}
await using var naive = ChildServer.Start(Path.Combine(repo, "bench", "NaiveServer", "bin", "Release", "net10.0", "medserve-naive-server.dll"),
    naiveArgs, naivePort, Path.Combine(logDir, "naive.log"), null);
using var naiveHttp = V2Http.NewClient(naive.BaseAddress, maxC);
await naive.WaitReadyAsync(naiveHttp, ["/v2/health/ready"], TimeSpan.FromMinutes(1));
foreach (var w in workloads)
{
    await WarmServerAsync(w, [i => V2Http.InferAsync(naiveHttp, w.Name, w.JsonBodies[i % w.JsonBodies.Length], null),
        i => V2Http.InferAsync(naiveHttp, w.Name, w.BinaryBodies[i % w.BinaryBodies.Length], w.BinaryHeaderLength)]);
}
var naiveSpread = new List<double>();

async Task<Result[]> NaiveHalfAsync(Workload w, int c) =>
[
    await HttpRun(naiveHttp, naive.ProcessId, w, "naive ASP.NET", "HTTP JSON", "n/a", c, json: true, scrape: false, options.NaiveHalfSeconds),
    await HttpRun(naiveHttp, naive.ProcessId, w, "naive ASP.NET", "HTTP binary", "n/a", c, json: false, scrape: false, options.NaiveHalfSeconds),
];

// The pooled naive rows go in at `at`: ahead of the MedServe rows measured between the halves.
void AddNaive(int at, Result[] before, Result[] after)
{
    for (var i = 0; i < before.Length; i++)
    {
        var (a, b) = (before[i], after[i]);
        naiveSpread.Add(Math.Abs(a.RequestsPerSecond - b.RequestsPerSecond) / Math.Max(1, Math.Min(a.RequestsPerSecond, b.RequestsPerSecond)));
        results.Insert(at + i, Result.Pool(a, b));
    }
}

// 3. MedServe: the node in its own process; HTTP JSON, HTTP binary and the grain client, batching off then on. With
// --tracing, one node per tracing mode (off, or a sample ratio exporting spans over OTLP to a receiver in this process),
// all started at once and loaded in turn, so each mode sees the same machine.
{
    await using var traceSink = options.Tracing.Any(t => t != "off") ? new TraceSink() : null;
    var nodes = new List<(string Server, ChildServer Node, HttpClient Http, MedServeClient Client)>();
    try
    {
        foreach (var tracing in options.Tracing)
        {
            var server = BenchOptions.ServerName(tracing);
            var port = ChildServer.FreePort();
            var gateway = ChildServer.FreePort();
            var data = Directory.CreateTempSubdirectory("medserve-bench-data").FullName;
            string[] tracingArgs = tracing == "off" ? ["--MedServe:Tracing:Enabled", "false"]
                : ["--MedServe:Tracing:SampleRatio", tracing, "--OTEL_EXPORTER_OTLP_ENDPOINT", traceSink!.Endpoint, "--OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf"];
            var node = ChildServer.Start(Path.Combine(repo, "silo", "bin", "Release", "net10.0", "medserve-silo.dll"),
                ["--urls", $"http://127.0.0.1:{port}", "--data", data, "--import", string.Join(',', workloads.Select(w => w.PackageDir)),
                 "--silo-port", ChildServer.FreePort().ToString(CultureInfo.InvariantCulture), "--gateway-port", gateway.ToString(CultureInfo.InvariantCulture),
                 "--Logging:LogLevel:Default", "Warning",
                 // One key at up to 128 connections measures the server, not the per-key rate limit (2000/s by default).
                 "--MedServe:Limits:InferPerSecond", "0", .. tracingArgs, .. options.NodeArgs],
                port, Path.Combine(logDir, $"medserve-node{(tracing == "off" ? "" : "-traced-" + tracing)}.log"), data);
            var http = V2Http.NewClient(node.BaseAddress, maxC);
            nodes.Add((server, node, http, null!));
            await node.WaitReadyAsync(http, ["/v2/health/ready", .. workloads.Select(w => $"/v2/models/{w.Name}/ready")], TimeSpan.FromMinutes(3));
            nodes[^1] = (server, node, http, await MedServeClient.ConnectAsync(new MedServeClientOptions { Gateways = [$"127.0.0.1:{gateway}"] }));
        }
        foreach (var w in workloads)
        {
            // Off and on alternate at each concurrency (off-on, on-off, ...) so drift in the machine's load and in the
            // server's warm-up does not favour one mode; the policy changes only between modes. Tracing modes alternate the same way.
            var current = new string?[nodes.Count];
            for (var k = 0; k < options.Concurrency.Length; k++)
            {
                var c = options.Concurrency[k];
                var naiveBefore = await NaiveHalfAsync(w, c);
                var naiveAt = results.Count;
                foreach (var batching in k % 2 == 0 ? options.Batching : options.Batching.Reverse())
                {
                    foreach (var n in k % 2 == 0 ? Enumerable.Range(0, nodes.Count) : Enumerable.Range(0, nodes.Count).Reverse())
                    {
                        var (server, node, http, client) = nodes[n];
                        if (batching != current[n])
                        {
                            await SetBatchingAsync(http, w, batching);
                            if (k == 0)
                            {
                                await WarmServerAsync(w, [i => V2Http.InferAsync(http, w.Name, w.JsonBodies[i % w.JsonBodies.Length], null),
                                    i => V2Http.InferAsync(http, w.Name, w.BinaryBodies[i % w.BinaryBodies.Length], w.BinaryHeaderLength),
                                    async i => { await client.InferAsync(w.Name, w.GrainRequests[i % w.GrainRequests.Length]); return Observation.None; }]);
                            }
                            current[n] = batching;
                        }
                        await HttpRun(http, node.ProcessId, w, server, "HTTP JSON", batching, c, json: true, scrape: true);
                        await HttpRun(http, node.ProcessId, w, server, "HTTP binary", batching, c, json: false, scrape: true);
                        await GrainRun(client, http, node.ProcessId, w, server, batching, c);
                    }
                }
                AddNaive(naiveAt, naiveBefore, await NaiveHalfAsync(w, c));
            }
        }
    }
    finally
    {
        foreach (var (_, node, http, client) in nodes)
        {
            if (client is not null)
            {
                await client.DisposeAsync();
            }
            http.Dispose();
            await node.DisposeAsync();
        }
    }
    if (traceSink is not null)
    {
        // The traced nodes flushed their exporters as they stopped.
        notes.Add(string.Create(CultureInfo.InvariantCulture, $"tracing: the traced nodes exported {traceSink.Exports} OTLP batches, {traceSink.Bytes / 1024.0:0} KiB of spans, to a receiver in the load process (it answers 200 and counts bytes)"));
    }
}

if (naiveSpread.Count > 0)
{
    naiveSpread.Sort();
    notes.Add(string.Create(CultureInfo.InvariantCulture,
        $"drift: the naive server's two halves (before and after MedServe's runs at the same concurrency) differed by {naiveSpread[naiveSpread.Count / 2]:0%} in req/s at the median, {naiveSpread[^1]:0%} at most; its rows pool both"));
}

// 4. Report.
var report = Report.Build(options, workloads, results, notes, stamp);
var dir = Path.Combine(repo, "bench", "results");
Directory.CreateDirectory(dir);
var file = $"bench-{stamp:yyyyMMdd-HHmmss}{(options.Label is null ? "" : "-" + options.Label)}";
await File.WriteAllTextAsync(Path.Combine(dir, file + ".md"), report.Markdown);
await File.WriteAllTextAsync(Path.Combine(dir, file + ".json"), report.Json);
Console.WriteLine(report.Markdown);
Console.Error.WriteLine($"bench: wrote bench/results/{file}.md and .json");
return 0;

void Raw(Workload w)
{
    using var so = new SessionOptions
    {
        IntraOpNumThreads = 1,
        InterOpNumThreads = 1,
        ExecutionMode = ExecutionMode.ORT_SEQUENTIAL,
        GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL,
    };
    so.AddSessionConfigEntry("session.intra_op.allow_spinning", "0");
    using var session = new InferenceSession(w.OnnxPath, so);
    using var runOptions = new RunOptions();
    string[] inputs = [w.Input];
    string[] outputs = [Workload.Output];

    // The reference answer for sample 0, which every front end must reproduce.
    using (var one = OrtValue.CreateTensorValueFromMemory(w.Samples[0].ToArray(), w.RequestShape))
    using (var r = session.Run(runOptions, inputs, [one], outputs))
    {
        w.Reference = r[0].GetTensorDataAsSpan<float>().ToArray();
    }

    foreach (var batch in options.RawBatches)
    {
        var stats = LoadRunner.RunThreads(options.RawWorkers, options.Warmup, options.Seconds, worker =>
        {
            var values = new float[batch * w.RowElements];
            for (var i = 0; i < batch; i++)
            {
                w.Samples[(worker + i) % w.Samples.Length].CopyTo(values, i * w.RowElements);
            }
            var input = OrtValue.CreateTensorValueFromMemory(values, [batch, .. w.RowShape]);
            OrtValue[] args = [input];
            return () =>
            {
                using var r = session.Run(runOptions, inputs, args, outputs);
            };
        });
        Add(w, "raw ONNX Runtime", "in process", "n/a", options.RawWorkers, batch, stats, null, null, "ok");
    }
}

// Measures one HTTP configuration for `seconds` (default: the option); a result is recorded unless it is a naive half.
async Task<Result> HttpRun(HttpClient http, int pid, Workload w, string server, string transport, string batching, int c, bool json, bool scrape, double? seconds = null)
{
    var bodies = json ? w.JsonBodies : w.BinaryBodies;
    int? header = json ? null : w.BinaryHeaderLength;
    var check = await ProbeAsync(async () =>
    {
        var (body, h) = await V2Http.SendAsync(http, w.Name, bodies[0], header);
        return V2Http.ReadOutput(body, h, Workload.Output);
    }, w);
    Dictionary<string, double>? before = null;
    double? cpu0 = null;
    async Task AtStart()
    {
        before = scrape ? await Metrics.ScrapeAsync(http, w.Name) : null;
        cpu0 = ProcessCpu.ReadSeconds(pid); // after the scrape: its CPU is not the requests'
    }
    var stats = options.Load == "wrk"
        ? await WrkRunner.RunAsync(http.BaseAddress!, w.Name, bodies, header, c, options.Warmup, seconds ?? options.Seconds, AtStart)
        : await LoadRunner.RunAsync(c, options.Warmup, seconds ?? options.Seconds, i => V2Http.InferAsync(http, w.Name, bodies[i % bodies.Length], header), AtStart);
    var cpu = ProcessCpu.ReadSeconds(pid) - cpu0; // before the closing scrape
    var server1 = scrape ? Metrics.Diff(before, await Metrics.ScrapeAsync(http, w.Name)) : null;
    return Add(w, server, transport, batching, c, 1, stats, server1, cpu, check, record: seconds is null);
}

async Task GrainRun(MedServeClient client, HttpClient http, int pid, Workload w, string server, string batching, int c)
{
    var check = await ProbeAsync(async () =>
    {
        var r = await client.InferAsync(w.Name, w.GrainRequests[0]);
        return r.Outputs.First(o => o.Name == Workload.Output).AsSpan<float>().ToArray();
    }, w);
    Dictionary<string, double>? before = null;
    double? cpu0 = null;
    var stats = await LoadRunner.RunAsync(c, options.Warmup, options.Seconds, async i =>
    {
        var r = await client.InferAsync(w.Name, w.GrainRequests[i % w.GrainRequests.Length]);
        return new Observation(r.ComputeMilliseconds, r.QueueMilliseconds, r.BatchSize);
    }, async () =>
    {
        before = await Metrics.ScrapeAsync(http, w.Name);
        cpu0 = ProcessCpu.ReadSeconds(pid);
    });
    var cpu = ProcessCpu.ReadSeconds(pid) - cpu0;
    Add(w, server, "grain client", batching, c, 1, stats, Metrics.Diff(before, await Metrics.ScrapeAsync(http, w.Name)), cpu, check);
}

// One request before the load: the answer must match raw ONNX Runtime's (and a route refresh after a redeploy settles).
static async Task<string> ProbeAsync(Func<Task<float[]>> call, Workload w)
{
    for (var attempt = 1; ; attempt++)
    {
        try
        {
            var got = await call();
            var diff = got.Length != w.Reference.Length ? double.PositiveInfinity : got.Zip(w.Reference, (a, b) => Math.Abs((double)a - b)).Max();
            return diff <= 1e-4 ? "ok" : $"MISMATCH (max |diff| {diff:g3} vs raw ONNX Runtime)";
        }
        catch (Exception e) when (attempt < 10)
        {
            Console.Error.WriteLine($"bench: probe failed ({e.GetType().Name}: {e.Message}); retrying");
            await Task.Delay(500);
        }
        catch (Exception e)
        {
            return $"probe failed: {e.GetType().Name}: {e.Message}";
        }
    }
}

// A fresh server process runs every path for a while before anything is measured (JIT tiering, pools, Orleans).
async Task WarmServerAsync(Workload w, Func<int, Task<Observation>>[] paths)
{
    foreach (var path in paths)
    {
        var s = await LoadRunner.RunAsync(Math.Min(8, maxC), 0, options.ServerWarmup, path);
        if (s.Errors > 0)
        {
            Console.Error.WriteLine($"bench: warm-up of {w.Name}: {s.Errors} errors (first: {s.FirstError})");
        }
    }
}

async Task SetBatchingAsync(HttpClient http, Workload w, string mode)
{
    var policy = mode == "off"
        ? new Dictionary<string, object> { ["max_batch_size"] = 1 }
        : new Dictionary<string, object> { ["max_batch_size"] = options.BatchMax, ["max_queue_delay_microseconds"] = options.BatchDelayMicroseconds };
    if (mode != "off" && options.BatchRuns > 0)
    {
        policy["max_concurrent_runs"] = options.BatchRuns;
    }
    var started = Stopwatch.GetTimestamp();
    using var response = await http.PutAsJsonAsync($"/api/deployments/{w.Name}/{w.Version}?wait=true", new Dictionary<string, object> { ["replicas"] = 1, ["batching"] = policy });
    var text = await response.Content.ReadAsStringAsync();
    string echoed;
    try
    {
        using var doc = JsonDocument.Parse(text);
        var state = doc.RootElement.TryGetProperty("state", out var s) ? s.ToString() : "?";
        var spec = doc.RootElement.TryGetProperty("spec", out var sp) && sp.TryGetProperty("batching", out var b) ? b.GetRawText() : "(not echoed)";
        echoed = $"HTTP {(int)response.StatusCode}, state {state}, server's policy {spec}";
    }
    catch (JsonException)
    {
        echoed = $"HTTP {(int)response.StatusCode}: {text[..Math.Min(200, text.Length)]}";
    }
    var note = $"{w.Name}: batching {mode} = PUT {JsonSerializer.Serialize(policy)} -> {echoed}";
    if (!notes.Contains(note))
    {
        notes.Add(note);
    }
    Console.Error.WriteLine($"bench: {note} ({Stopwatch.GetElapsedTime(started).TotalSeconds:0.0} s)");
}

// cpuSeconds: the server process's CPU time (user + system) over the measured window; null for raw ONNX Runtime.
Result Add(Workload w, string server, string transport, string batching, int c, int rows, LoadStats s, ServerStats? srv, double? cpuSeconds, string check, bool record = true)
{
    var r = new Result
    {
        Model = w.Name,
        Server = server,
        Transport = transport,
        Batching = batching,
        Concurrency = c,
        RowsPerRequest = rows,
        Requests = s.Requests,
        Errors = s.Errors,
        FirstError = s.FirstError,
        Seconds = s.Elapsed,
        RequestsPerSecond = s.Requests / s.Elapsed,
        RowsPerSecond = s.Requests * rows / s.Elapsed,
        P50Ms = s.Percentile(0.50),
        P95Ms = s.Percentile(0.95),
        P99Ms = s.Percentile(0.99),
        ServerRequests = srv?.Requests,
        ServerRequestMeanMs = srv?.RequestMeanMs,
        ServerRuns = srv?.Runs,
        ServerComputeMeanMs = srv?.ComputeMeanMs,
        ServerRowsPerRun = srv?.MeanBatch,
        ComputeP50Ms = s.Compute.Length > 0 ? LoadStats.Pct(s.Compute, 0.5) : null,
        QueueP50Ms = s.Queue.Length > 0 ? LoadStats.Pct(s.Queue, 0.5) : null,
        QueueMeanMs = s.Queue.Length > 0 ? s.Queue.Average() : null,
        ResponseBatchMean = s.Batch.Length > 0 ? s.Batch.Average() : null,
        ServerCpuSeconds = cpuSeconds,
        ServerCpuUsPerRequest = cpuSeconds is { } cpu && s.Requests > 0 ? cpu * 1e6 / s.Requests : null,
        Check = check,
    };
    if (record)
    {
        results.Add(r);
    }
    var sb = new StringBuilder();
    sb.Append(CultureInfo.InvariantCulture, $"bench: {w.Key,-6} {r.Label,-44} c={c,-4} {r.RowsPerSecond,10:0} rows/s  p50 {r.P50Ms,8:0.000}  p99 {r.P99Ms,8:0.000} ms");
    if (r.ServerComputeMeanMs is { } cm)
    {
        sb.Append(CultureInfo.InvariantCulture, $"  srv compute {cm:0.000} ms, {r.ServerRowsPerRun:0.0} rows/run");
    }
    if (r.ServerCpuUsPerRequest is { } us)
    {
        sb.Append(CultureInfo.InvariantCulture, $"  srv CPU {us:0} µs/req");
    }
    if (r.Errors > 0)
    {
        sb.Append(CultureInfo.InvariantCulture, $"  ERRORS {r.Errors}: {r.FirstError}");
    }
    if (check != "ok")
    {
        sb.Append("  " + check);
    }
    Console.Error.WriteLine(sb.ToString());
    return r;
}

static string FindRepo()
{
    for (var d = new DirectoryInfo(AppContext.BaseDirectory); d is not null; d = d.Parent)
    {
        if (File.Exists(Path.Combine(d.FullName, "Cluster.sln")))
        {
            return d.FullName;
        }
    }
    throw new InvalidOperationException("run from inside the repository");
}
