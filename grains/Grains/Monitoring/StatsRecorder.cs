using System.Collections.Concurrent;
using System.Diagnostics.Metrics;
using MedServe.Inference.Runtime;

namespace MedServe.Grains.Monitoring;

/// <summary>
/// This silo's live figures: listens to the <see cref="InferenceMetrics.MeterName"/> meter's instruments (the same
/// measurements <c>/metrics</c> exports) and keeps, per (model, version) as the tags name them, a ring of one-second
/// slots over the last <see cref="RingSeconds"/> seconds: outcome counts and request, queue, compute and batch-size
/// buckets (<see cref="LatencyBuckets"/>). Also samples the process CPU once a second.
/// </summary>
/// <remarks>
/// The listener callback runs on the inference hot path: it finds the series without allocating (a value-tuple
/// key), takes the series' lock and bumps a few counters. A series' rings are allocated on its first measurement
/// of each kind, and a series untouched for over <see cref="RingSeconds"/> seconds is dropped. The meter is static,
/// so every recorder in a process (several TestingHost silos) sees every measurement of that process.
/// </remarks>
public sealed class StatsRecorder : IDisposable
{
    /// <summary>Seconds the ring covers: the longest window <see cref="Snapshot"/> answers.</summary>
    public const int RingSeconds = 3600;

    private const string Success = "success";

    private static readonly int SecondsBuckets = LatencyBuckets.Seconds.Length + 1;
    private static readonly int RowsBuckets = LatencyBuckets.Rows.Length + 1;

    private readonly TimeProvider _time;
    private readonly MeterListener _listener;
    private readonly ITimer _cpuTimer;
    private readonly ConcurrentDictionary<(string Model, string Version), Series> _series = new();
    private readonly Lock _cpuLock = new();
    private long _cpuWallTicks;
    private TimeSpan _cpuTime;
    private double _cpuPercent;
    private int _ticks;

    public StatsRecorder() : this(TimeProvider.System)
    {
    }

    public StatsRecorder(TimeProvider time)
    {
        _time = time;
        _cpuWallTicks = time.GetTimestamp();
        _cpuTime = Environment.CpuUsage.TotalTime;
        _listener = new MeterListener
        {
            InstrumentPublished = (instrument, listener) =>
            {
                if (instrument.Meter.Name == InferenceMetrics.MeterName && KindOf(instrument.Name) is { } kind)
                {
                    listener.EnableMeasurementEvents(instrument, kind);
                }
            },
        };
        _listener.SetMeasurementEventCallback<double>(OnDouble);
        _listener.SetMeasurementEventCallback<long>(OnLong);
        _listener.Start();
        _cpuTimer = time.CreateTimer(_ => Tick(), null, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
    }

    /// <summary>
    /// The figures over the last <paramref name="windowSeconds"/> seconds (1 to <see cref="RingSeconds"/>), the
    /// current second included; <see cref="SiloStats.Address"/> is left for the caller. Deployments with nothing in
    /// the window are left out. Each has <c>ceil(window / step)</c> points of <c>step = ceil(window / 60)</c> seconds,
    /// aligned on multiples of the step in Unix time (so silos' points line up by Start), the last being the step now
    /// running; a point counts only its seconds inside the window, so the points add up to the totals except for the
    /// at most step - 1 oldest seconds of the window that fall before the first point's step.
    /// </summary>
    public SiloStats Snapshot(int windowSeconds)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(windowSeconds, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(windowSeconds, RingSeconds);
        var at = _time.GetUtcNow();
        var now = at.ToUnixTimeSeconds();
        Prune(now);
        var deployments = new List<DeploymentStats>(_series.Count);
        foreach (var (key, series) in _series)
        {
            if (series.Snapshot(key.Model, key.Version, now, windowSeconds) is { } stats)
            {
                deployments.Add(stats);
            }
        }
        deployments.Sort(static (a, b) => a.Model != b.Model
            ? string.CompareOrdinal(a.Model, b.Model)
            : string.CompareOrdinal(a.Version, b.Version));
        double cpu;
        lock (_cpuLock)
        {
            cpu = _cpuPercent;
        }
        return new SiloStats
        {
            CpuPercent = cpu,
            MemoryBytes = Environment.WorkingSet,
            Cores = Environment.ProcessorCount,
            Deployments = [.. deployments],
            At = at,
            WindowSeconds = windowSeconds,
        };
    }

    public void Dispose()
    {
        _listener.Dispose();
        _cpuTimer.Dispose();
    }

    /// <summary>Once a second: the process CPU over the last second, and now and then dropping stale series.</summary>
    private void Tick()
    {
        var wall = _time.GetTimestamp();
        var cpu = Environment.CpuUsage.TotalTime;
        lock (_cpuLock)
        {
            var elapsed = _time.GetElapsedTime(_cpuWallTicks, wall);
            if (elapsed > TimeSpan.Zero)
            {
                _cpuPercent = Math.Max(0, (cpu - _cpuTime).TotalSeconds / elapsed.TotalSeconds * 100);
            }
            _cpuWallTicks = wall;
            _cpuTime = cpu;
        }
        if (Interlocked.Increment(ref _ticks) % 60 == 0)
        {
            Prune(_time.GetUtcNow().ToUnixTimeSeconds());
        }
    }

    private void Prune(long now)
    {
        foreach (var pair in _series)
        {
            if (pair.Value.TryRetire(now))
            {
                _series.TryRemove(pair);
            }
        }
    }

    private void OnDouble(Instrument instrument, double measurement, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state) =>
        Record(state, measurement, tags);

    private void OnLong(Instrument instrument, long measurement, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state) =>
        Record(state, measurement, tags);

    private void Record(object? state, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        if (state is not InstrumentKind kind)
        {
            return;
        }
        string? model = null, version = null, outcome = null;
        foreach (var tag in tags)
        {
            switch (tag.Key)
            {
                case "model":
                    model = tag.Value as string;
                    break;
                case "version":
                    version = tag.Value as string;
                    break;
                case "outcome":
                    outcome = tag.Value as string;
                    break;
                default:
                    break;
            }
        }
        if (model is null || version is null)
        {
            return;
        }
        var second = _time.GetUtcNow().ToUnixTimeSeconds();
        var key = (model, version);
        while (true)
        {
            if (!_series.TryGetValue(key, out var series))
            {
                series = _series.GetOrAdd(key, static (_, created) => new Series(created), second);
            }
            if (series.Record(kind.Value, second, value, outcome))
            {
                return;
            }
            // Retired by a prune between the lookup and the lock: make sure it is out of the map and look again.
            _series.TryRemove(new KeyValuePair<(string, string), Series>(key, series));
        }
    }

    private static InstrumentKind? KindOf(string name) => name switch
    {
        "medserve.inference.request.duration" => InstrumentKind.Request,
        "medserve.inference.queue.duration" => InstrumentKind.Queue,
        "medserve.inference.compute.duration" => InstrumentKind.Compute,
        "medserve.inference.batch.size" => InstrumentKind.BatchSize,
        _ => null,
    };

    /// <summary>Which of our instruments a measurement came from (the listener's state: no lookup per measurement).</summary>
    private sealed class InstrumentKind(int value)
    {
        public const int RequestValue = 1, QueueValue = 2, ComputeValue = 3, BatchSizeValue = 4;

        public static readonly InstrumentKind Request = new(RequestValue);
        public static readonly InstrumentKind Queue = new(QueueValue);
        public static readonly InstrumentKind Compute = new(ComputeValue);
        public static readonly InstrumentKind BatchSize = new(BatchSizeValue);

        public int Value { get; } = value;
    }

    /// <summary>
    /// One (model, version)'s rings. Slot <c>s % RingSeconds</c> holds second <c>s</c> when <c>_stamps</c> says so;
    /// a slot is cleared when a later second first writes to it. Histogram rings are <c>RingSeconds x buckets</c>
    /// ints (a slot's count for one second fits), allocated on first use.
    /// </summary>
    private sealed class Series
    {
        private readonly Lock _lock = new();
        private readonly long[] _stamps = new long[RingSeconds];
        private string[] _outcomeNames = [];
        private int[][] _outcomeCounts = [];
        private int[]? _request, _queue, _compute, _batchSize;
        private long _lastTouched;
        private bool _retired;

        public Series(long created)
        {
            Array.Fill(_stamps, long.MinValue);
            _lastTouched = created;
        }

        /// <summary>False when the series was retired (dropped from the map): the caller records into a new one.</summary>
        public bool Record(int kind, long second, double value, string? outcome)
        {
            lock (_lock)
            {
                if (_retired)
                {
                    return false;
                }
                var slot = (int)(second % RingSeconds);
                if (_stamps[slot] != second)
                {
                    Clear(slot);
                    _stamps[slot] = second;
                }
                if (second > _lastTouched)
                {
                    _lastTouched = second;
                }
                switch (kind)
                {
                    case InstrumentKind.RequestValue:
                        // A request's one measurement: its outcome and its duration.
                        var index = OutcomeIndex(outcome ?? "unknown"); // may grow _outcomeCounts: before reading it
                        _outcomeCounts[index][slot]++;
                        Bump(ref _request, SecondsBuckets, slot, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, value));
                        break;
                    case InstrumentKind.QueueValue:
                        Bump(ref _queue, SecondsBuckets, slot, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, value));
                        break;
                    case InstrumentKind.ComputeValue:
                        Bump(ref _compute, SecondsBuckets, slot, LatencyBuckets.IndexOf(LatencyBuckets.Seconds, value));
                        break;
                    case InstrumentKind.BatchSizeValue:
                        Bump(ref _batchSize, RowsBuckets, slot, LatencyBuckets.IndexOf(LatencyBuckets.Rows, value));
                        break;
                    default:
                        break;
                }
                return true;
            }
        }

        /// <summary>Retires the series when nothing touched it for over an hour; a retired series records nothing.</summary>
        public bool TryRetire(long now)
        {
            lock (_lock)
            {
                _retired |= now - _lastTouched > RingSeconds;
                return _retired;
            }
        }

        public DeploymentStats? Snapshot(string model, string version, long now, int window)
        {
            var step = (window + SiloStats.MaxPoints - 1) / SiloStats.MaxPoints;
            var count = (window + step - 1) / step;
            var from = now - window + 1;
            // Points are aligned on multiples of the step (Unix seconds), so silos' series line up by Start; the last
            // is the step now running, and each covers only its seconds inside the window.
            var firstStep = (FloorDiv(now, step) - count + 1) * step;
            var outcomes = new Dictionary<string, long>(StringComparer.Ordinal);
            var request = new long[SecondsBuckets];
            var queue = new long[SecondsBuckets];
            var compute = new long[SecondsBuckets];
            var batchSize = new long[RowsBuckets];
            var pointRequests = new long[count];
            var pointErrors = new long[count];
            var pointBuckets = new long[count][];
            for (var p = 0; p < count; p++)
            {
                pointBuckets[p] = new long[SecondsBuckets];
            }
            var any = false;
            lock (_lock)
            {
                var outcomeTotals = new long[_outcomeNames.Length];
                var successIndex = Array.IndexOf(_outcomeNames, Success);
                for (var second = from; second <= now; second++)
                {
                    var slot = (int)(second % RingSeconds);
                    if (_stamps[slot] != second)
                    {
                        continue;
                    }
                    any = true;
                    // The window's oldest seconds may precede the first point: in the totals only.
                    var p = second >= firstStep ? (int)((second - firstStep) / step) : -1;
                    long requests = 0, errors = 0;
                    for (var o = 0; o < _outcomeCounts.Length; o++)
                    {
                        var n = _outcomeCounts[o][slot];
                        outcomeTotals[o] += n;
                        requests += n;
                        errors += o == successIndex ? 0 : n;
                    }
                    AddSlot(_request, SecondsBuckets, slot, request);
                    AddSlot(_queue, SecondsBuckets, slot, queue);
                    AddSlot(_compute, SecondsBuckets, slot, compute);
                    AddSlot(_batchSize, RowsBuckets, slot, batchSize);
                    if (p >= 0)
                    {
                        pointRequests[p] += requests;
                        pointErrors[p] += errors;
                        AddSlot(_request, SecondsBuckets, slot, pointBuckets[p]);
                    }
                }
                for (var o = 0; o < outcomeTotals.Length; o++)
                {
                    if (outcomeTotals[o] > 0)
                    {
                        outcomes[_outcomeNames[o]] = outcomeTotals[o];
                    }
                }
            }
            if (!any)
            {
                return null;
            }
            return new DeploymentStats
            {
                Model = model,
                Version = version,
                Outcomes = outcomes,
                Request = request,
                Queue = queue,
                Compute = compute,
                BatchSize = batchSize,
                Points = [.. Enumerable.Range(0, count).Select(p => new StatsPoint(
                    DateTimeOffset.FromUnixTimeSeconds(firstStep + ((long)p * step)), pointRequests[p], pointErrors[p], pointBuckets[p]))],
                StepSeconds = step,
            };
        }

        private static long FloorDiv(long a, long b) => a >= 0 ? a / b : -((-a + b - 1) / b);

        private static void AddSlot(int[]? ring, int buckets, int slot, long[] target)
        {
            if (ring is null)
            {
                return;
            }
            var offset = slot * buckets;
            for (var b = 0; b < buckets; b++)
            {
                target[b] += ring[offset + b];
            }
        }

        private static void Bump(ref int[]? ring, int buckets, int slot, int bucket) =>
            (ring ??= new int[RingSeconds * buckets])[(slot * buckets) + bucket]++;

        private int OutcomeIndex(string outcome)
        {
            for (var i = 0; i < _outcomeNames.Length; i++)
            {
                if (string.Equals(_outcomeNames[i], outcome, StringComparison.Ordinal))
                {
                    return i;
                }
            }
            // A new outcome (a handful per deployment: success and the error kinds): its ring, once.
            _outcomeNames = [.. _outcomeNames, outcome];
            _outcomeCounts = [.. _outcomeCounts, new int[RingSeconds]];
            return _outcomeNames.Length - 1;
        }

        private void Clear(int slot)
        {
            foreach (var counts in _outcomeCounts)
            {
                counts[slot] = 0;
            }
            ClearSlot(_request, SecondsBuckets, slot);
            ClearSlot(_queue, SecondsBuckets, slot);
            ClearSlot(_compute, SecondsBuckets, slot);
            ClearSlot(_batchSize, RowsBuckets, slot);
        }

        private static void ClearSlot(int[]? ring, int buckets, int slot)
        {
            if (ring is not null)
            {
                Array.Clear(ring, slot * buckets, buckets);
            }
        }
    }
}
