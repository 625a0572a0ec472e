using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using MedServe;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;

// Runs each configuration for the same time, side by side in one run, and reports throughput and
// latency percentiles with ratios to the raw ONNX Runtime ceiling. The node runs as its own process;
// load comes from this one. Usage: dotnet run -c Release --project bench/MedServe.Bench -- [seconds] [concurrency,...]
var seconds = args.Length > 0 ? double.Parse(args[0], CultureInfo.InvariantCulture) : 5;
var levels = args.Length > 1 ? args[1].Split(',').Select(int.Parse).ToArray() : [1, 8, 32];
var repo = FindRepo();
var package = ModelPackage.FromDirectory(Path.Combine(repo, "samples", "breast-cancer-logreg"));
var row = Enumerable.Range(0, 30).Select(i => 10f + i).ToArray();
var results = new List<Result>();

// 1. The ceiling: ONNX Runtime in process, one row per Run, no server.
using (var model = OnnxModel.Load(package.Model, package.Manifest, new RuntimeOptions { Accelerator = "cpu" }))
{
    var request = new InferenceRequest([TensorTypes.Create<float>("input", [1, 30], row)], ["probabilities"]);
    foreach (var c in levels)
    {
        results.Add(await Measure("raw ONNX Runtime (in process)", c, seconds, () => { model.Run(request); return Task.CompletedTask; }));
    }
}

// 2. MedServe over HTTP, the node in its own process.
var silo = Path.Combine(repo, "silo", "bin", "Release", "net10.0", "medserve-silo.dll");
if (!File.Exists(silo))
{
    Console.Error.WriteLine($"build the node first: dotnet build -c Release silo ({silo} is missing)");
    return 2;
}
var port = FreePort();
var data = Directory.CreateTempSubdirectory("medserve-bench").FullName;
using var node = Process.Start(new ProcessStartInfo("dotnet", [silo, "--urls", $"http://127.0.0.1:{port}", "--data", data,
    "--import", Path.Combine(repo, "samples"), "--silo-port", FreePort().ToString(CultureInfo.InvariantCulture),
    "--gateway-port", FreePort().ToString(CultureInfo.InvariantCulture), "--Logging:LogLevel:Default", "Warning"])
{ RedirectStandardOutput = false, RedirectStandardError = false })!;
try
{
    using var http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = 1024 }) { BaseAddress = new Uri($"http://127.0.0.1:{port}") };
    await WaitReadyAsync(http, node);
    var json = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = row } }, outputs = new[] { new { name = "probabilities" } } }));
    var header = Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new
    {
        inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, parameters = new { binary_data_size = 120 } } },
        outputs = new[] { new { name = "probabilities", parameters = new { binary_data = true } } },
    }));
    var binary = header.Concat(MemoryMarshal.AsBytes(row.AsSpan()).ToArray()).ToArray();
    foreach (var c in levels)
    {
        results.Add(await Measure("MedServe HTTP JSON", c, seconds, () => PostAsync(http, json, null)));
        results.Add(await Measure("MedServe HTTP binary", c, seconds, () => PostAsync(http, binary, header.Length)));
    }
}
finally
{
    node.Kill(entireProcessTree: true);
    await node.WaitForExitAsync();
    Directory.Delete(data, recursive: true);
}

// Report: each figure as a ratio to the ceiling at the same concurrency.
var report = new StringBuilder();
report.AppendLine(CultureInfo.InvariantCulture, $"# breast-cancer-logreg, one row per request, {seconds:0.#} s per cell, {Environment.ProcessorCount} cores, {DateTime.UtcNow:yyyy-MM-dd HH:mm} UTC");
report.AppendLine();
report.AppendLine("| configuration | concurrency | requests/s | p50 ms | p95 ms | p99 ms | throughput vs raw |");
report.AppendLine("|---|---|---|---|---|---|---|");
foreach (var r in results)
{
    var raw = results.First(x => x.Name.StartsWith("raw", StringComparison.Ordinal) && x.Concurrency == r.Concurrency);
    report.AppendLine(CultureInfo.InvariantCulture, $"| {r.Name} | {r.Concurrency} | {r.PerSecond:0} | {r.P50:0.000} | {r.P95:0.000} | {r.P99:0.000} | {r.PerSecond / raw.PerSecond:0.000}x |");
}
Console.Write(report);
Directory.CreateDirectory(Path.Combine(repo, "bench", "results"));
var stamp = DateTime.UtcNow.ToString("yyyyMMdd-HHmm", CultureInfo.InvariantCulture);
await File.WriteAllTextAsync(Path.Combine(repo, "bench", "results", $"logreg-{stamp}.md"), report.ToString());
await File.WriteAllTextAsync(Path.Combine(repo, "bench", "results", $"logreg-{stamp}.json"), JsonSerializer.Serialize(results, new JsonSerializerOptions { WriteIndented = true }));
return 0;

static async Task<Result> Measure(string name, int concurrency, double seconds, Func<Task> call)
{
    for (var i = 0; i < 200; i++)
    {
        await call(); // warm-up
    }
    var stop = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
    var latencies = new List<double>[concurrency];
    var started = Stopwatch.GetTimestamp();
    await Task.WhenAll(Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
    {
        var mine = latencies[w] = new List<double>(100_000);
        while (Stopwatch.GetTimestamp() < stop)
        {
            var t = Stopwatch.GetTimestamp();
            await call();
            mine.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
        }
    })));
    var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
    var all = latencies.SelectMany(l => l).Order().ToArray();
    double P(double q) => all[Math.Min(all.Length - 1, (int)(q * all.Length))];
    var result = new Result(name, concurrency, all.Length / elapsed, P(0.50), P(0.95), P(0.99));
    Console.Error.WriteLine(result);
    return result;
}

static async Task PostAsync(HttpClient http, byte[] body, int? headerLength)
{
    using var content = new ByteArrayContent(body);
    content.Headers.ContentType = new(headerLength is null ? "application/json" : "application/octet-stream");
    if (headerLength is { } h)
    {
        content.Headers.Add("Inference-Header-Content-Length", h.ToString(CultureInfo.InvariantCulture));
    }
    using var response = await http.PostAsync("/v2/models/breast-cancer-logreg/infer", content);
    if (response.StatusCode != HttpStatusCode.OK)
    {
        throw new InvalidOperationException($"infer answered {(int)response.StatusCode}: {await response.Content.ReadAsStringAsync()}");
    }
    await response.Content.ReadAsByteArrayAsync();
}

static async Task WaitReadyAsync(HttpClient http, Process node)
{
    var deadline = DateTime.UtcNow.AddMinutes(2);
    while (DateTime.UtcNow < deadline && !node.HasExited)
    {
        try
        {
            using var r = await http.GetAsync("/v2/health/ready");
            if (r.IsSuccessStatusCode)
            {
                return;
            }
        }
        catch (HttpRequestException)
        {
        }
        await Task.Delay(200);
    }
    throw new InvalidOperationException("the node did not become ready within 2 minutes (its output is above)");
}

static int FreePort()
{
    using var l = new TcpListener(IPAddress.Loopback, 0);
    l.Start();
    return ((IPEndPoint)l.LocalEndpoint).Port;
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

internal sealed record Result(string Name, int Concurrency, double PerSecond, double P50, double P95, double P99);
