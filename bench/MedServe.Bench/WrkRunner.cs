using System.Diagnostics;
using System.Globalization;
using System.Text.Json;

namespace MedServe.Bench;

/// <summary>
/// HTTP load from <c>wrk</c> (C, epoll, one thread): the same closed loop as <see cref="LoadRunner"/> (N connections, each
/// sending its next request when the last is answered, the workload's bodies in turn), but a generator that takes far
/// less of the two cores it shares with the server, and does not spin its threads between requests the way a .NET load
/// process does. The bench measured that spinning as a third of a server's samples at one connection (bench/README).
/// Per-request server timing is not read (the server's /metrics still is); percentiles are wrk's.
/// </summary>
internal static class WrkRunner
{
    public static string? Executable => Environment.GetEnvironmentVariable("PATH")?.Split(Path.PathSeparator)
        .Select(d => Path.Combine(d, "wrk")).FirstOrDefault(File.Exists);

    public static async Task<LoadStats> RunAsync(Uri server, string model, byte[][] bodies, int? headerLength, int concurrency,
        double warmup, double seconds, Func<Task>? atStart)
    {
        var dir = Directory.CreateTempSubdirectory("medserve-bench-wrk");
        try
        {
            for (var i = 0; i < bodies.Length; i++)
            {
                await File.WriteAllBytesAsync(Path.Combine(dir.FullName, $"body{i + 1}.bin"), bodies[i]);
            }
            var script = Path.Combine(dir.FullName, "load.lua");
            await File.WriteAllTextAsync(script, Script(dir.FullName, $"/v2/models/{model}/infer", bodies.Length, headerLength));
            var url = new Uri(server, "/").ToString();
            if (warmup > 0)
            {
                await RunAsync(script, url, concurrency, warmup);
            }
            if (atStart is not null)
            {
                await atStart();
            }
            await RunAsync(script, url, concurrency, seconds);
            using var result = JsonDocument.Parse(await File.ReadAllTextAsync(Path.Combine(dir.FullName, "result.json")));
            var r = result.RootElement;
            long Get(string name) => r.GetProperty(name).GetInt64();
            var failed = Get("status") + Get("connect") + Get("read") + Get("write") + Get("timeout");
            var answered = Get("requests") - Get("status"); // wrk counts a non-2xx answer as a request too
            return new LoadStats(answered, failed,
                failed > 0 ? $"wrk: {Get("status")} non-2xx, {Get("connect")} connect, {Get("read")} read, {Get("write")} write, {Get("timeout")} timeout errors" : null,
                Get("duration_us") / 1e6, [], [], [], [])
            {
                Summary = (Get("p50_us") / 1e3, Get("p95_us") / 1e3, Get("p99_us") / 1e3),
            };
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static async Task RunAsync(string script, string url, int concurrency, double seconds)
    {
        var info = new ProcessStartInfo(Executable ?? "wrk")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        // wrk takes whole seconds.
        foreach (var a in new[] { "-t1", $"-c{concurrency}", $"-d{Math.Max(1, (int)Math.Ceiling(seconds))}s", "--timeout", "10s", "-s", script, url })
        {
            info.ArgumentList.Add(a);
        }
        using var wrk = Process.Start(info) ?? throw new InvalidOperationException("wrk did not start");
        var output = wrk.StandardOutput.ReadToEndAsync();
        var errors = wrk.StandardError.ReadToEndAsync();
        await wrk.WaitForExitAsync();
        if (wrk.ExitCode != 0)
        {
            throw new InvalidOperationException($"wrk exited with {wrk.ExitCode}: {await errors}{await output}");
        }
    }

    /// <summary>
    /// Each request is formatted once, when the thread starts (its own header table: wrk.format writes Content-Length into it); the
    /// connection's next request is the next body in turn. done() writes the summary where the bench reads it.
    /// </summary>
    private static string Script(string dir, string path, int count, int? headerLength) =>
        """
        local dir = "DIR"
        local reqs = {}
        init = function(args) -- per thread, once wrk.headers holds the Host header
          for i = 1, COUNT do
            local f = assert(io.open(dir .. "/body" .. i .. ".bin", "rb"))
            local body = f:read("*a")
            f:close()
            local headers = { ["Content-Type"] = "TYPE", ["Authorization"] = "Bearer KEY" EXTRA }
            reqs[i] = wrk.format("POST", "PATH", headers, body)
          end
        end
        local k = 0
        request = function()
          k = k % COUNT + 1
          return reqs[k]
        end
        done = function(summary, latency, requests)
          local e = summary.errors
          local f = assert(io.open(dir .. "/result.json", "w"))
          f:write(string.format('{"requests":%d,"duration_us":%d,"status":%d,"connect":%d,"read":%d,"write":%d,"timeout":%d,"p50_us":%d,"p95_us":%d,"p99_us":%d}',
            summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
            latency:percentile(50), latency:percentile(95), latency:percentile(99)))
          f:close()
        end
        """
        .Replace("DIR", dir, StringComparison.Ordinal)
        .Replace("COUNT", count.ToString(CultureInfo.InvariantCulture), StringComparison.Ordinal)
        .Replace("TYPE", headerLength is null ? "application/json" : "application/octet-stream", StringComparison.Ordinal)
        .Replace("KEY", V2Http.BenchKey, StringComparison.Ordinal)
        .Replace("EXTRA", headerLength is { } h ? $", [\"{V2Http.HeaderLength}\"] = \"{h.ToString(CultureInfo.InvariantCulture)}\"" : "", StringComparison.Ordinal)
        .Replace("PATH", path, StringComparison.Ordinal);
}
