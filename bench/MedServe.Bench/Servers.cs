using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;

namespace MedServe.Bench;

/// <summary>A server under test, run as its own process; its output goes to a log file, not the report.</summary>
internal sealed class ChildServer : IAsyncDisposable
{
    private static readonly List<ChildServer> Running = [];
    private static PosixSignalRegistration[]? _signals;

    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly string? _tempDir;

    private ChildServer(Process process, StreamWriter log, string logPath, Uri baseAddress, string? tempDir)
    {
        _process = process;
        _log = log;
        LogPath = logPath;
        BaseAddress = baseAddress;
        _tempDir = tempDir;
    }

    public Uri BaseAddress { get; }

    public string LogPath { get; }

    public int ProcessId => _process.Id;

    public static ChildServer Start(string dll, IEnumerable<string> args, int port, string logPath, string? tempDir)
    {
        if (!File.Exists(dll))
        {
            throw new FileNotFoundException($"{dll} is missing: build Release first (bench/run.sh does)");
        }
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        info.ArgumentList.Add(dll);
        foreach (var a in args)
        {
            info.ArgumentList.Add(a);
        }
        // Each server runs with the GC its own runtimeconfig.json asks for, as a user starts it: both are ASP.NET Core
        // apps and take Server GC (until session 9 the bench forced workstation GC on both, which is what neither ships;
        // bench/README.md, "Garbage collector").
        // MedServe asks every caller for a key; the naive server ignores it.
        info.Environment["MEDSERVE_ADMIN_KEY"] = V2Http.BenchKey;
        var log = new StreamWriter(logPath, append: false) { AutoFlush = true };
        var process = Process.Start(info) ?? throw new InvalidOperationException($"could not start {dll}");
        process.OutputDataReceived += (_, e) => Write(log, e.Data);
        process.ErrorDataReceived += (_, e) => Write(log, e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        var child = new ChildServer(process, log, logPath, new Uri($"http://127.0.0.1:{port}"), tempDir);
        lock (Running)
        {
            Running.Add(child);
            // Ctrl-C or SIGTERM must not leave a server behind (the Orleans client's host would swallow SIGTERM).
            _signals ??= [PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal), PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal)];
        }
        return child;
    }

    private static void OnSignal(PosixSignalContext context)
    {
        lock (Running)
        {
            foreach (var child in Running)
            {
                child.KillQuietly();
            }
        }
        Console.Error.WriteLine($"bench: {context.Signal}: servers stopped");
        Environment.Exit(130);
    }

    private void KillQuietly()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill(entireProcessTree: true);
                _process.WaitForExit(5000);
            }
            if (_tempDir is not null && Directory.Exists(_tempDir))
            {
                Directory.Delete(_tempDir, recursive: true);
            }
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UnauthorizedAccessException or System.ComponentModel.Win32Exception)
        {
        }
    }

    private static void Write(StreamWriter log, string? line)
    {
        if (line is null)
        {
            return;
        }
        lock (log)
        {
            log.WriteLine(line);
        }
    }

    /// <summary>Waits until every path answers 200 (health, then each model's readiness).</summary>
    public async Task WaitReadyAsync(HttpClient http, IEnumerable<string> paths, TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        foreach (var path in paths)
        {
            while (true)
            {
                if (_process.HasExited)
                {
                    throw new InvalidOperationException($"the server exited with code {_process.ExitCode}; see {LogPath}");
                }
                if (DateTime.UtcNow > deadline)
                {
                    throw new TimeoutException($"{BaseAddress}{path.TrimStart('/')} was not ready within {timeout.TotalSeconds:0} s; see {LogPath}");
                }
                try
                {
                    using var r = await http.GetAsync(new Uri(BaseAddress, path));
                    if (r.IsSuccessStatusCode)
                    {
                        break;
                    }
                }
                catch (HttpRequestException)
                {
                }
                await Task.Delay(200);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        lock (Running)
        {
            Running.Remove(this);
        }
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        await _process.WaitForExitAsync();
        _process.Dispose();
        lock (_log)
        {
            _log.Dispose();
        }
        if (_tempDir is not null)
        {
            try
            {
                Directory.Delete(_tempDir, recursive: true);
            }
            catch (IOException)
            {
            }
        }
    }

    public static int FreePort()
    {
        using var l = new TcpListener(IPAddress.Loopback, 0);
        l.Start();
        return ((IPEndPoint)l.LocalEndpoint).Port;
    }
}

/// <summary>V2 infer over HTTP: JSON, or the binary tensor extension.</summary>
internal static class V2Http
{
    public const string HeaderLength = "Inference-Header-Content-Length";

    /// <summary>The admin key the bench starts MedServe with and sends on every request (to both servers, alike).</summary>
    public const string BenchKey = "bench-key";

    public static HttpClient NewClient(Uri baseAddress, int maxConcurrency) => new(new SocketsHttpHandler
    {
        MaxConnectionsPerServer = Math.Max(maxConcurrency, 1) + 16,
        UseProxy = false,
        AutomaticDecompression = DecompressionMethods.None,
        PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
    })
    {
        BaseAddress = baseAddress,
        Timeout = TimeSpan.FromSeconds(60),
        DefaultRequestHeaders = { Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", BenchKey) },
    };

    /// <summary>Sends one infer; non-200 throws with the server's message.</summary>
    public static async Task<(byte[] Body, int? HeaderLength)> SendAsync(HttpClient http, string model, byte[] body, int? headerLength)
    {
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new(headerLength is null ? "application/json" : "application/octet-stream");
        if (headerLength is { } h)
        {
            content.Headers.Add(HeaderLength, h.ToString(CultureInfo.InvariantCulture));
        }
        using var response = await http.PostAsync($"/v2/models/{model}/infer", content);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        if (response.StatusCode != HttpStatusCode.OK)
        {
            throw new HttpRequestException($"infer answered {(int)response.StatusCode}: {Encoding.UTF8.GetString(bytes.AsSpan(0, Math.Min(bytes.Length, 300)))}");
        }
        int? responseHeader = response.Headers.TryGetValues(HeaderLength, out var values)
            && int.TryParse(values.First(), NumberStyles.None, CultureInfo.InvariantCulture, out var n) ? n : null;
        return (bytes, responseHeader);
    }

    public static async Task<Observation> InferAsync(HttpClient http, string model, byte[] body, int? headerLength)
    {
        var (bytes, h) = await SendAsync(http, model, body, headerLength);
        return ReadTiming(bytes.AsSpan(0, h ?? bytes.Length));
    }

    /// <summary>
    /// Server-side timing from the response's top-level <c>parameters</c>, if the server puts it there: any numeric
    /// parameter whose name says queue, compute or batch; the unit from its suffix (_us/_ns/_ms/_s, default ms).
    /// </summary>
    public static Observation ReadTiming(ReadOnlySpan<byte> json)
    {
        if (json.IndexOf("\"parameters\""u8) < 0)
        {
            return Observation.None;
        }
        var reader = new Utf8JsonReader(json);
        double compute = double.NaN, queue = double.NaN, batch = double.NaN;
        var inParameters = false;
        while (reader.Read())
        {
            if (reader.TokenType == JsonTokenType.PropertyName)
            {
                if (!inParameters && reader.CurrentDepth == 1 && reader.ValueTextEquals("parameters"u8))
                {
                    if (reader.Read() && reader.TokenType == JsonTokenType.StartObject)
                    {
                        inParameters = true;
                    }
                    continue;
                }
                if (inParameters && reader.CurrentDepth == 2)
                {
                    var name = reader.GetString()!.ToLowerInvariant();
                    if (reader.Read() && reader.TokenType == JsonTokenType.Number)
                    {
                        var v = reader.GetDouble();
                        if (name.Contains("batch", StringComparison.Ordinal))
                        {
                            batch = v;
                        }
                        else if (name.Contains("queue", StringComparison.Ordinal))
                        {
                            queue = ToMs(name, v);
                        }
                        else if (name.Contains("compute", StringComparison.Ordinal))
                        {
                            compute = ToMs(name, v);
                        }
                    }
                    continue;
                }
                if (!inParameters && reader.CurrentDepth == 1)
                {
                    reader.Skip();
                }
            }
            else if (inParameters && reader.TokenType == JsonTokenType.EndObject && reader.CurrentDepth == 1)
            {
                break;
            }
        }
        return new Observation(compute, queue, batch);
    }

    private static double ToMs(string name, double v) =>
        name.EndsWith("_ns", StringComparison.Ordinal) || name.EndsWith("nanoseconds", StringComparison.Ordinal) ? v / 1e6
        : name.EndsWith("_us", StringComparison.Ordinal) || name.EndsWith("microseconds", StringComparison.Ordinal) ? v / 1e3
        : name.EndsWith("_s", StringComparison.Ordinal) || (name.EndsWith("seconds", StringComparison.Ordinal) && !name.EndsWith("milliseconds", StringComparison.Ordinal)) ? v * 1e3
        : v;

    /// <summary>An output's values from a JSON or binary response.</summary>
    public static float[] ReadOutput(byte[] body, int? headerLength, string output)
    {
        using var doc = JsonDocument.Parse(body.AsMemory(0, headerLength ?? body.Length));
        var offset = headerLength ?? 0;
        foreach (var o in doc.RootElement.GetProperty("outputs").EnumerateArray())
        {
            var size = o.TryGetProperty("parameters", out var p) && p.TryGetProperty("binary_data_size", out var s) ? s.GetInt32() : -1;
            if (o.GetProperty("name").GetString() == output)
            {
                return size >= 0
                    ? MemoryMarshal.Cast<byte, float>(body.AsSpan(offset, size)).ToArray()
                    : [.. o.GetProperty("data").EnumerateArray().Select(v => v.GetSingle())];
            }
            offset += Math.Max(size, 0);
        }
        throw new InvalidOperationException($"the response has no output '{output}'");
    }
}

/// <summary>Server-side figures of one run, from the node's /metrics before and after it (histogram sums and counts).</summary>
internal sealed record ServerStats(long Requests, double? RequestMeanMs, long Runs, double? ComputeMeanMs, double? MeanBatch);

/// <summary>Scrapes the MedServe meter's series for one model from the Prometheus endpoint.</summary>
internal static class Metrics
{
    public static async Task<Dictionary<string, double>?> ScrapeAsync(HttpClient http, string model)
    {
        try
        {
            using var r = await http.GetAsync("/metrics");
            if (!r.IsSuccessStatusCode)
            {
                return null;
            }
            return Parse(await r.Content.ReadAsStringAsync(), model);
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>Sums, over every series labelled with <paramref name="model"/>, each medserve_* _sum and _count.</summary>
    public static Dictionary<string, double> Parse(string text, string model)
    {
        var values = new Dictionary<string, double>(StringComparer.Ordinal);
        var label = $"model=\"{model}\"";
        foreach (var line in text.Split('\n'))
        {
            if (!line.StartsWith("medserve_", StringComparison.Ordinal) || !line.Contains(label, StringComparison.Ordinal))
            {
                continue;
            }
            var brace = line.IndexOf('{', StringComparison.Ordinal);
            var name = line[..brace];
            if (!name.EndsWith("_sum", StringComparison.Ordinal) && !name.EndsWith("_count", StringComparison.Ordinal))
            {
                continue;
            }
            var rest = line[(line.LastIndexOf('}') + 1)..].Trim().Split(' ');
            if (double.TryParse(rest[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var v))
            {
                values[name] = values.GetValueOrDefault(name) + v;
            }
        }
        return values;
    }

    public static ServerStats? Diff(Dictionary<string, double>? before, Dictionary<string, double>? after)
    {
        if (before is null || after is null)
        {
            return null;
        }
        double D(string part, string suffix)
        {
            var key = after.Keys.FirstOrDefault(k => k.Contains(part, StringComparison.Ordinal) && k.EndsWith(suffix, StringComparison.Ordinal));
            return key is null ? 0 : after[key] - before.GetValueOrDefault(key);
        }
        double Scale(string part)
        {
            var key = after.Keys.FirstOrDefault(k => k.Contains(part, StringComparison.Ordinal)) ?? "";
            return key.Contains("_milliseconds", StringComparison.Ordinal) ? 1 : key.Contains("_microseconds", StringComparison.Ordinal) ? 1e-3 : 1e3;
        }
        var requests = D("request_duration", "_count");
        var runs = D("compute_duration", "_count");
        var batches = D("batch_size", "_count");
        return new ServerStats(
            (long)requests,
            requests > 0 ? D("request_duration", "_sum") / requests * Scale("request_duration") : null,
            (long)runs,
            runs > 0 ? D("compute_duration", "_sum") / runs * Scale("compute_duration") : null,
            batches > 0 ? D("batch_size", "_sum") / batches : null);
    }
}

/// <summary>
/// Where traced nodes export their spans (OTLP over HTTP/protobuf): answers every export 200 and counts it, so the bench
/// measures real export work (serialising, posting) without a collector on the machine.
/// </summary>
internal sealed class TraceSink : IAsyncDisposable
{
    private readonly HttpListener _listener = new();
    private readonly Task _loop;
    private long _exports;
    private long _bytes;

    public TraceSink()
    {
        Endpoint = $"http://127.0.0.1:{ChildServer.FreePort()}";
        _listener.Prefixes.Add(Endpoint + "/");
        _listener.Start();
        _loop = Task.Run(ServeAsync);
    }

    public string Endpoint { get; }

    public long Exports => Interlocked.Read(ref _exports);

    public long Bytes => Interlocked.Read(ref _bytes);

    private async Task ServeAsync()
    {
        var buffer = new byte[81920];
        while (_listener.IsListening)
        {
            HttpListenerContext context;
            try
            {
                context = await _listener.GetContextAsync();
            }
            catch (Exception e) when (e is HttpListenerException or ObjectDisposedException or InvalidOperationException)
            {
                return;
            }
            int read;
            while ((read = await context.Request.InputStream.ReadAsync(buffer)) > 0)
            {
                Interlocked.Add(ref _bytes, read);
            }
            Interlocked.Increment(ref _exports);
            context.Response.StatusCode = 200;
            context.Response.ContentType = "application/x-protobuf";
            context.Response.ContentLength64 = 0;
            context.Response.Close();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _listener.Stop();
        _listener.Close();
        await _loop;
    }
}
