namespace MedServe;

/// <summary>
/// One silo's live figures for the operator dashboard: its process CPU and memory, and per deployment the counts
/// that the <c>MedServe</c> meter's instruments recorded on this silo (the same measurements <c>/metrics</c>
/// exports), over a window ending now. Key: the silo's address as <see cref="SiloInfo.Address"/> writes it; the
/// grain is placed on that silo, so asking every silo and adding up gives the whole cluster.
/// </summary>
public interface ISiloStatsGrain : IGrainWithStringKey
{
    /// <summary>Figures over the last <paramref name="windowSeconds"/> seconds (1 to 3600), with a time series of at most <see cref="SiloStats.MaxPoints"/> points.</summary>
    Task<SiloStats> GetAsync(int windowSeconds);
}

/// <summary>What <see cref="ISiloStatsGrain.GetAsync"/> answers.</summary>
[GenerateSerializer, Immutable, Alias("medserve.silo-stats")]
public sealed record SiloStats
{
    /// <summary>Most points in a deployment's time series.</summary>
    public const int MaxPoints = 60;

    [Id(0)] public string Address { get; init; } = "";
    /// <summary>Process CPU over the last second or so, in percent of one core (200 = two cores busy).</summary>
    [Id(1)] public double CpuPercent { get; init; }
    /// <summary>Process working set.</summary>
    [Id(2)] public long MemoryBytes { get; init; }
    [Id(3)] public int Cores { get; init; }
    [Id(4)] public DeploymentStats[] Deployments { get; init; } = [];
    [Id(5)] public DateTimeOffset At { get; init; }
    [Id(6)] public int WindowSeconds { get; init; }
}

/// <summary>
/// One deployment's figures on one silo over a window. Histograms are bucket counts with the boundaries of
/// <see cref="LatencyBuckets"/> (one more count than boundaries: the last is the overflow bucket), so silos add up
/// bucket by bucket and percentiles come from the sum, as Prometheus' <c>histogram_quantile</c> computes them.
/// </summary>
[GenerateSerializer, Immutable, Alias("medserve.deployment-stats")]
public sealed record DeploymentStats
{
    [Id(0)] public string Model { get; init; } = "";
    [Id(1)] public string Version { get; init; } = "";
    /// <summary>Finished requests by outcome (<c>success</c>, or an <see cref="ErrorKind"/> name such as <c>Overloaded</c> for 429 and <c>Timeout</c> for 504), as recorded by the front ends on this silo.</summary>
    [Id(2)] public Dictionary<string, long> Outcomes { get; init; } = [];
    /// <summary>End-to-end server time of requests (front ends on this silo), seconds buckets.</summary>
    [Id(3)] public long[] Request { get; init; } = [];
    /// <summary>Time in a replica's queue (replicas on this silo), seconds buckets.</summary>
    [Id(4)] public long[] Queue { get; init; } = [];
    /// <summary>ONNX Runtime time per run (replicas on this silo), seconds buckets.</summary>
    [Id(5)] public long[] Compute { get; init; } = [];
    /// <summary>Rows per ONNX Runtime run, <see cref="LatencyBuckets.Rows"/> buckets.</summary>
    [Id(6)] public long[] BatchSize { get; init; } = [];
    /// <summary>Time series, oldest first, each point covering <see cref="StepSeconds"/> seconds.</summary>
    [Id(7)] public StatsPoint[] Points { get; init; } = [];
    [Id(8)] public int StepSeconds { get; init; } = 1;
}

/// <summary>One point of a time series: requests finished, how many failed, and their end-to-end time buckets.</summary>
[GenerateSerializer, Immutable, Alias("medserve.stats-point")]
public sealed record StatsPoint(
    [property: Id(0)] DateTimeOffset Start,
    [property: Id(1)] long Requests,
    [property: Id(2)] long Errors,
    [property: Id(3)] long[] Request);

/// <summary>Histogram bucket boundaries shared by the meter's instruments, the silo stats and the dashboard.</summary>
public static class LatencyBuckets
{
    /// <summary>Sub-millisecond to ten-second upper bounds, in seconds: serving times are mostly well under 5 ms.</summary>
    public static readonly double[] Seconds = [0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    /// <summary>Rows per run, upper bounds.</summary>
    public static readonly double[] Rows = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024];

    /// <summary>The bucket of <paramref name="value"/>: the first whose upper bound is at least it, else the overflow bucket.</summary>
    public static int IndexOf(double[] bounds, double value)
    {
        var i = Array.BinarySearch(bounds, value);
        return i >= 0 ? i : ~i;
    }

    /// <summary>
    /// The <paramref name="q"/>-quantile (0..1) of bucket counts, interpolated linearly inside its bucket (as
    /// Prometheus does); null when there are no observations. The overflow bucket answers its lower bound.
    /// </summary>
    public static double? Quantile(double[] bounds, IReadOnlyList<long> counts, double q)
    {
        long total = 0;
        foreach (var c in counts)
        {
            total += c;
        }
        if (total == 0)
        {
            return null;
        }
        var rank = q * total;
        long seen = 0;
        for (var i = 0; i < counts.Count; i++)
        {
            if (counts[i] == 0)
            {
                continue;
            }
            if (seen + counts[i] >= rank)
            {
                if (i >= bounds.Length)
                {
                    return bounds[^1];
                }
                var lower = i == 0 ? 0 : bounds[i - 1];
                return lower + ((bounds[i] - lower) * ((rank - seen) / counts[i]));
            }
            seen += counts[i];
        }
        return bounds[^1];
    }

    /// <summary>Adds <paramref name="source"/> into <paramref name="target"/> bucket by bucket (growing it when shorter).</summary>
    public static long[] Add(long[] target, IReadOnlyList<long> source)
    {
        if (target.Length < source.Count)
        {
            Array.Resize(ref target, source.Count);
        }
        for (var i = 0; i < source.Count; i++)
        {
            target[i] += source[i];
        }
        return target;
    }
}
