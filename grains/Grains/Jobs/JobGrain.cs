using System.Diagnostics;
using MedServe.Routing;
using Microsoft.Extensions.Logging;
using Orleans.Streams;

namespace MedServe.Grains.Jobs;

/// <summary>What a job must survive a crash with, apart from its items and results.</summary>
[GenerateSerializer, Alias("medserve.job-record")]
public sealed class JobRecord
{
    [Id(0)] public string Model { get; set; } = "";
    [Id(1)] public string Version { get; set; } = "";
    [Id(2)] public JobState State { get; set; }
    [Id(3)] public int Total { get; set; }
    [Id(4)] public string[]? Outputs { get; set; }
    [Id(5)] public DateTimeOffset CreatedAt { get; set; }
    [Id(6)] public DateTimeOffset UpdatedAt { get; set; }
    [Id(7)] public string Source { get; set; } = "";
    [Id(8)] public int Redeliveries { get; set; }
}

/// <summary>A job's items, written once at submit.</summary>
[GenerateSerializer, Alias("medserve.job-input")]
public sealed class JobInput
{
    [Id(0)] public JobItem[] Items { get; set; } = [];
}

/// <summary>A job's answers by item id: one per item, however often an item was delivered.</summary>
[GenerateSerializer, Alias("medserve.job-results")]
public sealed class JobResults
{
    [Id(0)] public Dictionary<string, JobItemResult> ByItem { get; set; } = new(StringComparer.Ordinal);
}

/// <summary>
/// One async job. Items go out through the job stream in deliveries of <see cref="DeliverySize"/>, at most
/// <see cref="DeliveriesInFlight"/> at a time (flow control: a big job never floods the queues it shares with
/// online traffic). Answers come back through <see cref="ReportAsync"/> and are kept by item id, so an item
/// delivered twice still has one result. A delivery not answered within <see cref="Lease"/> is sent again; so
/// is every open delivery when the job wakes after a silo loss. Results are written at most every second:
/// a crash can repeat up to a second of work, never lose an answered item. Always active while it runs (its lease
/// timer must tick); an ended job deactivates and reads its state back when asked.
/// </summary>
[CollectionAgeLimit(AlwaysActive = true)]
internal sealed class JobGrain(
    [PersistentState("job", StorageNames.State)] IPersistentState<JobRecord> record,
    [PersistentState("job-input", StorageNames.State)] IPersistentState<JobInput> input,
    [PersistentState("job-results", StorageNames.State)] IPersistentState<JobResults> results,
    ILocalSiloDetails silo,
    ILogger<JobGrain> logger) : Grain, IJobGrain
{
    public const int MaxItems = 200_000;
    private const int DeliverySize = 32;
    private const int DeliveriesInFlight = 8;
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(20);
    private static readonly TimeSpan FlushEvery = TimeSpan.FromSeconds(1);

    private readonly Queue<int> _pending = new(); // item indexes to send
    private readonly Dictionary<long, (int[] Items, long SentAt)> _open = [];
    private long _nextDelivery;
    private bool _dirty;
    private long _lastFlush;
    private IDisposable? _timer;
    private IAsyncStream<JobWork>? _stream;
    private readonly Queue<(long At, int Answered)> _rate = new();

    private string JobId => this.GetPrimaryKeyString();

    public override Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _nextDelivery = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() << 16; // unique across activations
        if (record.RecordExists && record.State.State == JobState.Running)
        {
            Start();
        }
        return Task.CompletedTask;
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_dirty)
        {
            await FlushAsync();
        }
    }

    public async Task<JobInfo> SubmitAsync(JobSubmission submission)
    {
        if (record.RecordExists)
        {
            throw MedServeException.Conflict($"job '{JobId}' exists already", "id");
        }
        if (submission.Items.Length == 0)
        {
            throw MedServeException.Invalid("the job has no items", "items");
        }
        if (submission.Items.Length > MaxItems)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the job has {submission.Items.Length} items; the limit is {MaxItems}", "items");
        }
        var ids = new HashSet<string>(StringComparer.Ordinal);
        for (var i = 0; i < submission.Items.Length; i++)
        {
            var item = submission.Items[i];
            if (string.IsNullOrEmpty(item.Id) || item.Id.Length > 200)
            {
                throw MedServeException.Invalid($"items[{i}] needs an id of 1 to 200 characters", $"items[{i}].id");
            }
            if (!ids.Add(item.Id))
            {
                throw MedServeException.Invalid($"items[{i}]: the id '{item.Id}' is used twice; results are kept by item id", $"items[{i}].id");
            }
            if (item.Inputs.Length == 0)
            {
                throw MedServeException.Invalid($"items[{i}] has no inputs", $"items[{i}].inputs");
            }
        }
        // Resolve the version now: every item of a job runs on the same one.
        var route = await new ModelRouter(GrainFactory).ResolveAsync(submission.Model, submission.Version);

        var now = DateTimeOffset.UtcNow;
        input.State.Items = submission.Items;
        await input.WriteStateAsync();
        results.State.ByItem.Clear();
        await results.WriteStateAsync();
        record.State = new JobRecord
        {
            Model = route.Model,
            Version = route.Version,
            State = JobState.Running,
            Total = submission.Items.Length,
            Outputs = submission.Outputs is { Length: > 0 } outputs ? outputs : null,
            CreatedAt = now,
            UpdatedAt = now,
            Source = submission.Source,
        };
        await record.WriteStateAsync();
        await PublishAsync();
        Log.JobSubmitted(logger, JobId, route.Model, route.Version, submission.Items.Length, submission.Source);
        Start();
        await PumpAsync();
        return Info();
    }

    public Task<JobInfo?> GetAsync()
    {
        if (!record.RecordExists || record.State.State != JobState.Running)
        {
            DeactivateOnIdle(); // an ended (or unknown) job holds no memory between questions
        }
        return Task.FromResult(record.RecordExists ? Info() : null);
    }

    public async Task<JobInfo> CancelAsync()
    {
        EnsureExists();
        if (record.State.State == JobState.Running)
        {
            Stop();
            record.State.State = JobState.Cancelled;
            await FlushAsync();
            Log.JobEnded(logger, JobId, JobState.Cancelled, results.State.ByItem.Count, record.State.Total);
            DeactivateOnIdle();
        }
        return Info();
    }

    public async Task DeleteAsync()
    {
        EnsureExists();
        Stop();
        await input.ClearStateAsync();
        await results.ClearStateAsync();
        await record.ClearStateAsync();
        record.State = new JobRecord();
        await GrainFactory.GetGrain<IJobIndexGrain>(0).RemoveAsync(JobId);
        DeactivateOnIdle();
    }

    public Task<JobItemResult[]> GetResultsAsync()
    {
        EnsureExists();
        var byItem = results.State.ByItem;
        return Task.FromResult(input.State.Items.Select(i => byItem.GetValueOrDefault(i.Id)).OfType<JobItemResult>().ToArray());
    }

    public async Task ReportAsync(long delivery, JobItemResult[] answers)
    {
        if (!record.RecordExists || record.State.State != JobState.Running)
        {
            return; // cancelled or deleted meanwhile
        }
        _open.Remove(delivery);
        foreach (var answer in answers)
        {
            // De-duplicated by item id: a redelivered item's second answer is dropped.
            if (results.State.ByItem.TryAdd(answer.ItemId, answer))
            {
                _dirty = true;
            }
        }
        SampleRate();
        if (results.State.ByItem.Count >= record.State.Total)
        {
            await CompleteAsync();
            return;
        }
        await PumpAsync();
        if (_dirty && Stopwatch.GetElapsedTime(_lastFlush) >= FlushEvery)
        {
            await FlushAsync();
        }
    }

    public async Task ResumeAsync()
    {
        if (!record.RecordExists || record.State.State != JobState.Running)
        {
            return;
        }
        if (_timer is null)
        {
            Start(); // a fresh activation already queued every unanswered item
        }
        else if (_open.Count > 0)
        {
            // A silo went away: what it was running will not be answered. Send it again now, not after the lease.
            Redeliver(_open.Keys.ToList());
        }
        await PumpAsync();
    }

    private void Start()
    {
        _pending.Clear();
        _open.Clear();
        var byItem = results.State.ByItem;
        for (var i = 0; i < input.State.Items.Length; i++)
        {
            if (!byItem.ContainsKey(input.State.Items[i].Id))
            {
                _pending.Enqueue(i);
            }
        }
        _stream = this.GetStreamProvider(JobStreams.Provider).GetStream<JobWork>(StreamId.Create(JobStreams.Namespace, JobId));
        _timer ??= this.RegisterGrainTimer(OnTimerAsync, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        _lastFlush = Stopwatch.GetTimestamp();
    }

    private void Stop()
    {
        _timer?.Dispose();
        _timer = null;
        _pending.Clear();
        _open.Clear();
    }

    private async Task OnTimerAsync(CancellationToken cancellationToken)
    {
        if (record.State.State != JobState.Running)
        {
            return;
        }
        var expired = _open.Where(o => Stopwatch.GetElapsedTime(o.Value.SentAt) > Lease).Select(o => o.Key).ToList();
        if (expired.Count > 0)
        {
            Redeliver(expired);
        }
        await PumpAsync();
        if (_dirty)
        {
            await FlushAsync();
        }
    }

    private void Redeliver(List<long> deliveries)
    {
        foreach (var delivery in deliveries)
        {
            if (_open.Remove(delivery, out var open))
            {
                foreach (var index in open.Items.Where(i => !results.State.ByItem.ContainsKey(input.State.Items[i].Id)))
                {
                    _pending.Enqueue(index);
                    record.State.Redeliveries++;
                }
            }
        }
        Log.JobRedelivered(logger, JobId, deliveries.Count);
    }

    /// <summary>Sends deliveries while fewer than the window are open.</summary>
    private async Task PumpAsync()
    {
        while (_stream is not null && _open.Count < DeliveriesInFlight && _pending.Count > 0)
        {
            var indexes = new List<int>(DeliverySize);
            while (indexes.Count < DeliverySize && _pending.TryDequeue(out var index))
            {
                if (!results.State.ByItem.ContainsKey(input.State.Items[index].Id))
                {
                    indexes.Add(index);
                }
            }
            if (indexes.Count == 0)
            {
                break;
            }
            var delivery = ++_nextDelivery;
            _open[delivery] = ([.. indexes], Stopwatch.GetTimestamp());
            try
            {
                await _stream.OnNextAsync(new JobWork(JobId, delivery, record.State.Model, record.State.Version,
                    [.. indexes.Select(i => input.State.Items[i])], record.State.Outputs));
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The stream is unavailable for now (a silo is leaving): the lease sends it again.
                Log.JobDeliveryFailed(logger, JobId, e.GetType().Name);
                break;
            }
        }
    }

    private async Task CompleteAsync()
    {
        Stop();
        record.State.State = JobState.Completed;
        await FlushAsync();
        Log.JobEnded(logger, JobId, JobState.Completed, results.State.ByItem.Count, record.State.Total);
        // An ended job need not hold its items and results in memory: it reads them back when asked.
        DeactivateOnIdle();
    }

    private async Task FlushAsync()
    {
        record.State.UpdatedAt = DateTimeOffset.UtcNow;
        await results.WriteStateAsync();
        await record.WriteStateAsync();
        _dirty = false;
        _lastFlush = Stopwatch.GetTimestamp();
        await PublishAsync();
    }

    /// <summary>Tells the job index this job's summary (after each flush: at most once a second, and at the end).</summary>
    private Task PublishAsync() => GrainFactory.GetGrain<IJobIndexGrain>(0).SetAsync(Info());

    private void EnsureExists()
    {
        if (!record.RecordExists)
        {
            throw MedServeException.NotFound($"no job '{JobId}'");
        }
    }

    /// <summary>Keeps (time, answered) samples of the last ten seconds, for the rate and the ETA.</summary>
    private long SampleRate()
    {
        var now = Stopwatch.GetTimestamp();
        if (_rate.Count == 0 || Stopwatch.GetElapsedTime(_rate.Last().At, now) > TimeSpan.FromMilliseconds(100))
        {
            _rate.Enqueue((now, results.State.ByItem.Count));
        }
        while (_rate.Count > 1 && Stopwatch.GetElapsedTime(_rate.Peek().At, now) > TimeSpan.FromSeconds(10))
        {
            _rate.Dequeue();
        }
        return now;
    }

    private JobInfo Info()
    {
        var answered = results.State.ByItem.Values;
        var failed = answered.Count(r => r.Error is not null);
        var count = results.State.ByItem.Count;
        var now = SampleRate();
        var (since, then) = _rate.Peek();
        var seconds = Stopwatch.GetElapsedTime(since, now).TotalSeconds;
        var rate = seconds > 0.2 ? (count - then) / seconds : 0;
        var remaining = record.State.Total - count;
        return new JobInfo
        {
            Id = JobId,
            Model = record.State.Model,
            Version = record.State.Version,
            State = record.State.State,
            Total = record.State.Total,
            Succeeded = count - failed,
            Failed = failed,
            ItemsPerSecond = Math.Round(rate, 1),
            EtaSeconds = record.State.State == JobState.Running && rate > 0 ? Math.Round(remaining / rate, 1) : null,
            CreatedAt = record.State.CreatedAt,
            UpdatedAt = record.State.UpdatedAt,
            Source = record.State.Source,
            Silo = silo.SiloAddress.ToParsableString(),
            Redeliveries = record.State.Redeliveries,
        };
    }
}
