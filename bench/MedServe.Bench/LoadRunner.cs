using System.Diagnostics;

namespace MedServe.Bench;

/// <summary>What the server said about one request, where it says it (NaN when it does not).</summary>
internal readonly record struct Observation(double ComputeMs, double QueueMs, double BatchSize)
{
    public static readonly Observation None = new(double.NaN, double.NaN, double.NaN);
}

/// <summary>One measured run: latencies (sorted, ms) and what the server reported per request.</summary>
internal sealed record LoadStats(long Requests, long Errors, string? FirstError, double Elapsed, double[] Latencies, double[] Compute, double[] Queue, double[] Batch)
{
    /// <summary>p50, p95 and p99 (ms) as a load generator that keeps no per-request latencies reported them (wrk).</summary>
    public (double P50, double P95, double P99)? Summary { get; init; }

    public double Percentile(double q) => Summary is { } s
        ? q switch { 0.50 => s.P50, 0.95 => s.P95, 0.99 => s.P99, _ => throw new ArgumentOutOfRangeException(nameof(q), "wrk reports p50, p95 and p99") }
        : Pct(Latencies, q);

    public static double Pct(double[] sorted, double q) =>
        sorted.Length == 0 ? double.NaN : sorted[Math.Clamp((int)Math.Ceiling(q * sorted.Length) - 1, 0, sorted.Length - 1)];
}

/// <summary>Closed-loop load: N workers, each sending its next request as soon as the last one answered.</summary>
internal static class LoadRunner
{
    /// <summary>
    /// Warms up for <paramref name="warmup"/> seconds at the same concurrency (discarded), calls <paramref name="atStart"/>
    /// (a metrics scrape), then measures for <paramref name="seconds"/>.
    /// </summary>
    public static async Task<LoadStats> RunAsync(int concurrency, double warmup, double seconds, Func<int, Task<Observation>> call, Func<Task>? atStart = null)
    {
        if (warmup > 0)
        {
            await LoopAsync(concurrency, warmup, call);
        }
        if (atStart is not null)
        {
            await atStart();
        }
        return await LoopAsync(concurrency, seconds, call);
    }

    private static async Task<LoadStats> LoopAsync(int concurrency, double seconds, Func<int, Task<Observation>> call)
    {
        var stop = Stopwatch.GetTimestamp() + (long)(seconds * Stopwatch.Frequency);
        var next = -1;
        long errors = 0;
        string? firstError = null;
        var lat = new List<double>[concurrency];
        var obs = new List<Observation>[concurrency];
        var started = Stopwatch.GetTimestamp();
        await Task.WhenAll(Enumerable.Range(0, concurrency).Select(w => Task.Run(async () =>
        {
            var mine = lat[w] = new List<double>(64 * 1024);
            var seen = obs[w] = new List<Observation>(64 * 1024);
            while (Stopwatch.GetTimestamp() < stop)
            {
                var t = Stopwatch.GetTimestamp();
                try
                {
                    var o = await call(Interlocked.Increment(ref next));
                    mine.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                    seen.Add(o);
                }
                catch (Exception e)
                {
                    if (Interlocked.Increment(ref errors) == 1)
                    {
                        firstError = e.GetType().Name + ": " + e.Message;
                    }
                    await Task.Delay(1); // an error path must not spin the cores the server needs
                }
            }
        })));
        var elapsed = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var all = obs.SelectMany(o => o).ToArray();
        return new LoadStats(
            lat.Sum(l => l.Count), errors, firstError, elapsed,
            [.. lat.SelectMany(l => l).Order()],
            [.. all.Select(o => o.ComputeMs).Where(v => !double.IsNaN(v)).Order()],
            [.. all.Select(o => o.QueueMs).Where(v => !double.IsNaN(v)).Order()],
            [.. all.Select(o => o.BatchSize).Where(v => !double.IsNaN(v))]);
    }

    /// <summary>In-process runs on dedicated threads (ONNX Runtime's Run blocks), one call per iteration.</summary>
    public static LoadStats RunThreads(int workers, double warmup, double seconds, Func<int, Action> makeWorker)
    {
        var actions = Enumerable.Range(0, workers).Select(makeWorker).ToArray();
        Run(warmup);
        return Run(seconds);

        LoadStats Run(double duration)
        {
            var lat = new List<double>[workers];
            var start = Stopwatch.GetTimestamp();
            var stop = start + (long)(duration * Stopwatch.Frequency);
            var threads = Enumerable.Range(0, workers).Select(w => new Thread(() =>
            {
                var mine = lat[w] = new List<double>(1 << 20);
                var act = actions[w];
                while (Stopwatch.GetTimestamp() < stop)
                {
                    var t = Stopwatch.GetTimestamp();
                    act();
                    mine.Add(Stopwatch.GetElapsedTime(t).TotalMilliseconds);
                }
            })
            { IsBackground = true }).ToArray();
            foreach (var t in threads)
            {
                t.Start();
            }
            foreach (var t in threads)
            {
                t.Join();
            }
            var elapsed = Stopwatch.GetElapsedTime(start).TotalSeconds;
            return new LoadStats(lat.Sum(l => l.Count), 0, null, elapsed, [.. lat.SelectMany(l => l).Order()], [], [], []);
        }
    }
}
