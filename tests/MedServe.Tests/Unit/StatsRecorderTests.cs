using MedServe.Grains.Monitoring;
using MedServe.Inference.Runtime;
using Microsoft.Extensions.Time.Testing;

namespace MedServe.Tests.Unit;

/// <summary>
/// The silo stats recorder over the real <c>MedServe</c> instruments (recorded through <see cref="InferenceMetrics"/>),
/// with a fake clock. Every test uses its own model name: the meter is process-wide and other tests record too.
/// </summary>
public sealed class StatsRecorderTests : IDisposable
{
    // A whole hour in Unix time, so steps of any length start here.
    private static readonly DateTimeOffset T0 = new(2030, 1, 1, 0, 0, 0, TimeSpan.Zero);

    private readonly FakeTimeProvider _time = new(T0);
    private readonly StatsRecorder _recorder;
    private readonly string _model = $"stats-{Guid.NewGuid():N}";

    public StatsRecorderTests() => _recorder = new StatsRecorder(_time);

    public void Dispose() => _recorder.Dispose();

    private DeploymentStats? Find(SiloStats stats, string version = "1") =>
        stats.Deployments.SingleOrDefault(d => d.Model == _model && d.Version == version);

    private void Requests(int count, string outcome = "success", double seconds = 0.003, string? version = "1")
    {
        for (var i = 0; i < count; i++)
        {
            InferenceMetrics.RecordRequest(_model, version, outcome, TimeSpan.FromSeconds(seconds));
        }
    }

    [Fact]
    public void Outcomes_and_every_histogram_are_counted_per_deployment()
    {
        Requests(3, seconds: 0.003);
        Requests(1, "Overloaded", seconds: 0.0002);
        InferenceMetrics.RecordQueue(_model, "1", 0.0004);
        InferenceMetrics.RecordCompute(_model, "1", TimeSpan.FromSeconds(0.002), rows: 8);
        InferenceMetrics.RecordCompute(_model, "2", TimeSpan.FromSeconds(0.02), rows: 100);

        var stats = _recorder.Snapshot(60);

        Assert.Equal(60, stats.WindowSeconds);
        Assert.Equal(T0, stats.At);
        Assert.Equal(Environment.ProcessorCount, stats.Cores);
        Assert.True(stats.MemoryBytes > 0);
        var one = Find(stats) ?? throw new InvalidOperationException("no series for version 1");
        Assert.Equal(new Dictionary<string, long> { ["success"] = 3, ["Overloaded"] = 1 }, one.Outcomes);
        Assert.Equal(LatencyBuckets.Seconds.Length + 1, one.Request.Length);
        Assert.Equal(3, one.Request[6]);  // (0.0025, 0.005]
        Assert.Equal(1, one.Request[2]);  // (0.0001, 0.00025]
        Assert.Equal(4, one.Request.Sum());
        Assert.Equal(1, one.Queue[3]);    // (0.00025, 0.0005]
        Assert.Equal(1, one.Queue.Sum());
        Assert.Equal(1, one.Compute[5]);  // (0.001, 0.0025]
        Assert.Equal(1, one.Compute.Sum());
        Assert.Equal(LatencyBuckets.Rows.Length + 1, one.BatchSize.Length);
        Assert.Equal(1, one.BatchSize[3]); // (4, 8]
        Assert.Equal(1, one.BatchSize.Sum());

        var two = Find(stats, "2") ?? throw new InvalidOperationException("no series for version 2");
        Assert.Empty(two.Outcomes);
        Assert.Equal(0, two.Request.Sum());
        Assert.Equal(1, two.Compute[8]);   // (0.01, 0.025]
        Assert.Equal(1, two.BatchSize[7]); // (64, 128]
    }

    [Fact]
    public void A_request_without_a_version_is_kept_under_default()
    {
        Requests(2, version: null);
        var stats = _recorder.Snapshot(1);
        Assert.Null(Find(stats));
        Assert.Equal(2, Find(stats, "default")!.Outcomes["success"]);
    }

    [Fact]
    public void The_window_counts_only_its_own_seconds_and_old_slots_are_reused_clean()
    {
        Requests(4);
        _time.Advance(TimeSpan.FromSeconds(10));
        Requests(2, "Timeout");

        Assert.Equal(2, Find(_recorder.Snapshot(10))!.Outcomes.Values.Sum());   // seconds 1..10 after T0
        Assert.Equal(6, Find(_recorder.Snapshot(11))!.Outcomes.Values.Sum());   // T0 included
        Assert.Equal(2, Find(_recorder.Snapshot(1))!.Outcomes["Timeout"]);

        // An hour on, T0 has left the longest window; the later second is still in it, and a request now lands in
        // T0's slot, which counts only the new one.
        _time.Advance(TimeSpan.FromSeconds(3590));
        Assert.Equal(T0.AddHours(1), _time.GetUtcNow());
        Requests(1);
        var hour = Find(_recorder.Snapshot(3600))!;
        Assert.Equal(new Dictionary<string, long> { ["Timeout"] = 2, ["success"] = 1 }, hour.Outcomes);
        Assert.Equal(3, hour.Request.Sum());
        // 60-second steps aligned on the minute: the window's first 59 s (T0 + 10 among them) precede the first point.
        Assert.Equal(T0.AddSeconds(60), hour.Points[0].Start);
        Assert.Equal(1, hour.Points.Sum(p => p.Requests));
        Assert.Equal(1, Find(_recorder.Snapshot(1))!.Request.Sum());

        // Over an hour with nothing: the deployment is gone (its series dropped), and a new request starts afresh.
        _time.Advance(TimeSpan.FromSeconds(3601));
        Assert.Null(Find(_recorder.Snapshot(3600)));
        Requests(1);
        var fresh = Find(_recorder.Snapshot(3600))!;
        Assert.Equal(new Dictionary<string, long> { ["success"] = 1 }, fresh.Outcomes);
        Assert.Equal(1, fresh.Request.Sum());
        Assert.Equal(1, fresh.Points.Sum(p => p.Requests));
    }

    [Fact]
    public void Points_are_aligned_steps_with_requests_errors_and_buckets()
    {
        Requests(2);
        _time.Advance(TimeSpan.FromSeconds(1));
        Requests(1, "NotReady", seconds: 0.5);
        _time.Advance(TimeSpan.FromSeconds(1));
        Requests(5);

        // 120 s: two-second steps, 60 points, the last the step now running (T0 + 2 s).
        var d = Find(_recorder.Snapshot(120))!;
        Assert.Equal(2, d.StepSeconds);
        Assert.Equal(SiloStats.MaxPoints, d.Points.Length);
        Assert.Equal(T0.AddSeconds(2), d.Points[^1].Start);
        for (var i = 1; i < d.Points.Length; i++)
        {
            Assert.Equal(TimeSpan.FromSeconds(2), d.Points[i].Start - d.Points[i - 1].Start);
        }
        Assert.Equal((5L, 0L), (d.Points[^1].Requests, d.Points[^1].Errors));
        Assert.Equal((3L, 1L), (d.Points[^2].Requests, d.Points[^2].Errors));
        Assert.Equal(1, d.Points[^2].Request[12]); // (0.25, 0.5]
        Assert.Equal(2, d.Points[^2].Request[6]);
        Assert.All(d.Points[..^2], p => Assert.Equal(0, p.Requests));
        Assert.Equal(8, d.Points.Sum(p => p.Requests));
        Assert.Equal(d.Request, d.Points.Aggregate(new long[d.Request.Length], (sum, p) => LatencyBuckets.Add(sum, p.Request)));

        // A short window: one-second steps, as many points as seconds, every one inside the window.
        var short5 = Find(_recorder.Snapshot(5))!;
        Assert.Equal(1, short5.StepSeconds);
        Assert.Equal(5, short5.Points.Length);
        Assert.Equal([0L, 0, 2, 1, 5], short5.Points.Select(p => p.Requests));
        Assert.Equal(T0.AddSeconds(-2), short5.Points[0].Start);

        // The hour: 60-second steps.
        var hour = Find(_recorder.Snapshot(3600))!;
        Assert.Equal(60, hour.StepSeconds);
        Assert.Equal(SiloStats.MaxPoints, hour.Points.Length);
        Assert.Equal(T0, hour.Points[^1].Start);
        Assert.Equal(8, hour.Points[^1].Requests);
        Assert.Equal(1, hour.Points[^1].Errors);
    }

    [Fact]
    public void Cpu_is_the_process_time_over_the_last_second()
    {
        // Burn at least 50 ms of CPU on this thread, then let the recorder's one-second sample fire: at least 5 %.
        var start = Environment.CpuUsage.TotalTime;
        var spin = 0L;
        while (Environment.CpuUsage.TotalTime - start < TimeSpan.FromMilliseconds(50))
        {
            spin++;
        }
        Assert.Equal(0, _recorder.Snapshot(60).CpuPercent);
        _time.Advance(TimeSpan.FromSeconds(1));
        var stats = _recorder.Snapshot(60);
        Assert.True(stats.CpuPercent >= 5, $"{stats.CpuPercent} % after {spin} spins");
    }
}
