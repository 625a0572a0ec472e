using System.Collections;
using System.Diagnostics;
using System.Security.Cryptography;
using MedServe.Routing;
using Microsoft.AspNetCore.DataProtection;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using Orleans.Serialization;
using Orleans.Storage;
using Orleans.Streams;

namespace MedServe.Grains.Jobs;

/// <summary>What a job must survive a crash with; its items and results live in chunk records beside it.</summary>
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
    /// <summary>Items per item chunk (<c>job-items-{n}</c>); result parts are kept per item chunk.</summary>
    [Id(9)] public int ChunkSize { get; set; }
    [Id(10)] public int Succeeded { get; set; }
    [Id(11)] public int Failed { get; set; }
    /// <summary>SHA-256 of the submission: a retried submit with the same content answers this job.</summary>
    [Id(12)] public string ContentHash { get; set; } = "";
    /// <summary>Rows per inference request a worker may stack items into (the model's batching).</summary>
    [Id(13)] public int RowsPerRequest { get; set; } = 1;
    /// <summary>Sends so far of items sent more than once (by position); capped at <see cref="JobGrain.MaxAttempts"/>.</summary>
    [Id(14)] public Dictionary<int, int> Attempts { get; set; } = [];
    /// <summary>Who submitted it (a key id).</summary>
    [Id(15)] public string? Owner { get; set; }
}

/// <summary>A slice of a job's items, written once at submit.</summary>
[GenerateSerializer, SuppressReferenceTracking, Alias("medserve.job-item-chunk")]
public sealed class JobItemChunk
{
    /// <summary>Items in clear: only in chunks written before job data was encrypted (read, never written).</summary>
    [Id(0)] public JobItem[] Items { get; set; } = [];
    /// <summary>The items (ids and tensors), serialized and encrypted (<see cref="JobGrain.ProtectionPurpose"/>, then the job id).</summary>
    [Id(1)] public byte[]? Sealed { get; set; }
}

/// <summary>Answers appended for one item chunk: positions and their results, each item at most once across parts.</summary>
[GenerateSerializer, SuppressReferenceTracking, Alias("medserve.job-result-part")]
public sealed class JobResultPart
{
    /// <summary>Item positions, in clear (a reactivation rebuilds its answered bits from them).</summary>
    [Id(0)] public int[] Indexes { get; set; } = [];
    /// <summary>Results in clear: only in parts written before job data was encrypted (read, never written).</summary>
    [Id(1)] public JobItemResult[] Results { get; set; } = [];
    /// <summary>The results (ids, outputs, errors), serialized and encrypted like the items.</summary>
    [Id(2)] public byte[]? Sealed { get; set; }
}

/// <summary>
/// One async job. Its items are stored at submit in chunk records (<c>job-items-{n}</c>) and its answers are appended
/// as result parts (<c>job-results-{chunk}-{part}</c>), written as they come (at most every second) and never
/// rewritten; memory holds counters, a bit per item, the unwritten answers and the open deliveries. Items go out
/// through the job stream in deliveries sized to the model's batching, at most <see cref="MaxDeliveriesInFlight"/> (fewer for large items) at a
/// time. Answers come back through <see cref="ReportAsync"/> and are kept by item position, so an item delivered
/// twice still has one result. A delivery not answered or renewed within <see cref="Lease"/> is sent again (at most
/// <see cref="MaxAttempts"/> sends per item); so is every open delivery when the job wakes after a silo loss. Items a
/// worker could not run through no fault of their own (the runtime failed: <see cref="JobRetry"/>) are sent again after
/// a pause that grows with each send, within the same <see cref="MaxAttempts"/>; only then is that failure their error. A crash
/// can repeat up to a second of work, never lose an answered item or keep two answers for one. Chunks hold their
/// items and results encrypted (<see cref="ProtectionPurpose"/>, then the job id); positions and counters stay clear.
/// </summary>
[CollectionAgeLimit(AlwaysActive = true)]
internal sealed class JobGrain(
    [PersistentState("job", StorageNames.State)] IPersistentState<JobRecord> record,
    IServiceProvider services,
    ILocalSiloDetails silo,
    Microsoft.Extensions.Options.IOptions<LimitsOptions> limits,
    ILogger<JobGrain> logger) : Grain, IJobGrain
{
    /// <summary>Data Protection purpose of job items and results at rest; each job adds its id, so a chunk opens only in its own job.</summary>
    public const string ProtectionPurpose = "MedServe.Jobs.v1";
    public const int MaxAttempts = 5;
    /// <summary>Deliveries open at once: at least this many, however large the items.</summary>
    private const int MinDeliveriesInFlight = 8;
    /// <summary>
    /// ... and up to this many while their items come to under <see cref="WindowBytes"/>. A delivery's round trip (stream,
    /// worker, run, report) is mostly waiting, so a wider window keeps the cores busy: a 200,000-row job on logreg ran in
    /// 3.0 s instead of 4.0 with 32 open (bench/job.sh, a node that had run one job before).
    /// </summary>
    private const int MaxDeliveriesInFlight = 32;
    private const long WindowBytes = 64L << 20;
    private const int ChunkBytes = 1 << 20;
    private static readonly TimeSpan Lease = TimeSpan.FromSeconds(20);

    /// <summary>
    /// How long a delivery stays in its silo's stream cache after it was queued (the silo's stream options): long enough
    /// for its worker, which acknowledges each at once, to read it; one purged unread is sent again when its
    /// <see cref="Lease"/> ends, like one lost with its silo.
    /// </summary>
    internal static readonly TimeSpan StreamCacheTime = TimeSpan.FromSeconds(5);
    private static readonly TimeSpan FlushEvery = TimeSpan.FromSeconds(1);

    /// <summary>Pause before an item the runtime failed is sent again, times the sends it has had (1 s, 2 s, 3 s, 4 s).</summary>
    private static readonly TimeSpan RetryLaterStep = TimeSpan.FromSeconds(1);

    private IGrainStorage? _storage;
    private IDataProtector? _protector;
    private BitArray _answered = new(0);
    private int[] _parts = []; // result parts written, per item chunk
    private readonly List<(int Index, JobItemResult Result)> _unwritten = [];
    private int _cursor; // next item position not yet sent
    private readonly Queue<int> _retry = new(); // positions to send again
    private readonly List<(int Index, long Due)> _later = []; // positions to send again once Due (a Stopwatch timestamp) passes
    private readonly Dictionary<long, (int[] Items, long SentAt)> _open = [];
    private readonly Dictionary<int, JobItem[]> _itemCache = [];
    private long _nextDelivery;
    private long _lastFlush;
    private IDisposable? _timer;
    private IAsyncStream<JobWork>? _stream;
    private readonly Queue<(long At, int Answered)> _rate = new();

    private string JobId => this.GetPrimaryKeyString();

    private IGrainStorage Storage => _storage ??= services.GetRequiredKeyedService<IGrainStorage>(StorageNames.State);

    private IDataProtector Protector => _protector ??=
        services.GetRequiredService<IDataProtectionProvider>().CreateProtector(ProtectionPurpose).CreateProtector(JobId);

    private Serializer Serializer => services.GetRequiredService<Serializer>();

    /// <summary>Serializes and encrypts a chunk's payload (Data Protection: AES-256-CBC and HMACSHA256 by default).</summary>
    private byte[] Seal<T>(T value) => Protector.Protect(Serializer.SerializeToArray(value));

    private T Open<T>(byte[] sealedBytes) =>
        Serializer.Deserialize<T>(Protector.Unprotect(sealedBytes)) ?? throw new InvalidOperationException($"job {JobId}: an empty sealed chunk");

    private JobItem[] ItemsOf(JobItemChunk chunk) => chunk.Sealed is { } sealedBytes ? Open<JobItem[]>(sealedBytes) : chunk.Items;

    private JobItemResult[] ResultsOf(JobResultPart part) => part.Sealed is { } sealedBytes ? Open<JobItemResult[]>(sealedBytes) : part.Results;

    private int Answered => record.State.Succeeded + record.State.Failed;

    private int DeliverySize => Math.Clamp(record.State.RowsPerRequest * 4, 32, 1024);

    /// <summary>Deliveries open at once: as many as fit <see cref="WindowBytes"/> (items sized as the chunks were), within the bounds.</summary>
    private int DeliveriesInFlight => (int)Math.Clamp(WindowBytes / Math.Max(1L, (long)DeliverySize * (ChunkBytes / Math.Max(1, record.State.ChunkSize))),
        MinDeliveriesInFlight, MaxDeliveriesInFlight);

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        _nextDelivery = DateTimeOffset.UtcNow.ToUnixTimeMilliseconds() << 16; // unique across activations
        if (Running)
        {
            await LoadAnsweredAsync();
            Start();
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        if (_unwritten.Count > 0)
        {
            await FlushAsync();
        }
    }

    public async Task<JobInfo> SubmitAsync(JobSubmission submission)
    {
        try
        {
            return await SubmitCoreAsync(submission);
        }
        catch
        {
            // A refused submit (unknown model, bad items) leaves no job: nor an activation, which nothing would collect.
            if (!record.RecordExists)
            {
                Leave.Touch();
            }
            throw;
        }
    }

    private async Task<JobInfo> SubmitCoreAsync(JobSubmission submission)
    {
        var hash = ContentHash(submission);
        if (record.RecordExists)
        {
            StayOnlyWhileRunning();
            return record.State.ContentHash == hash
                ? Info() // a retry of the same submit
                : throw MedServeException.Conflict("a job with that id exists already with other content; submit under another id", "id");
        }
        if (submission.Items.Length == 0)
        {
            throw MedServeException.Invalid("the job has no items", "items");
        }
        // The API refuses these first; a grain client (CLI, MedServe.Client) meets the same limit here.
        if (submission.Items.Length > limits.Value.MaxJobItems)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the job has {submission.Items.Length} items; the limit is {limits.Value.MaxJobItems} per job ({LimitsOptions.Section}:MaxJobItems): split it into several jobs", "items");
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
                // Item ids may be patient identifiers: name the position, never the id.
                throw MedServeException.Invalid($"items[{i}]: its id is also an earlier item's; results are kept by item id", $"items[{i}].id");
            }
            if (item.Inputs.Length == 0 && item.Error is null)
            {
                throw MedServeException.Invalid($"items[{i}] has no inputs", $"items[{i}].inputs");
            }
        }
        // Resolve the version now: every item of a job runs on the same one.
        var route = await new ModelRouter(GrainFactory).ResolveAsync(submission.Model, submission.Version);
        var batching = (await GrainFactory.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(route.Model, route.Version)).GetAsync()).Spec.Batching;

        var itemBytes = Math.Max(1, (submission.Items.FirstOrDefault(i => i.Error is null) ?? submission.Items[0]).Inputs.Sum(t => (long)t.Data.Length) + 64);
        var chunkSize = (int)Math.Clamp(ChunkBytes / itemBytes, 1, 4096);
        for (var c = 0; c * chunkSize < submission.Items.Length; c++)
        {
            var slice = submission.Items.AsSpan(c * chunkSize, Math.Min(chunkSize, submission.Items.Length - (c * chunkSize))).ToArray();
            await WriteOverAsync(ItemsKey(c), new JobItemChunk { Sealed = Seal(slice) }); // over what a submit that died half-way left
        }
        var now = DateTimeOffset.UtcNow;
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
            Owner = submission.Owner,
            ChunkSize = chunkSize,
            ContentHash = hash,
            // Stack rows up to the model's batch size; small rows (tabular) further, up to 64 KB a request.
            RowsPerRequest = Math.Max(batching.MaxBatchSize, (int)Math.Clamp(65536 / itemBytes, 1, 256)),
        };
        await record.WriteStateAsync();
        _answered = new BitArray(record.State.Total);
        _parts = new int[ChunkCount];
        await PublishAsync();
        Log.JobSubmitted(logger, JobId, route.Model, route.Version, submission.Items.Length, submission.Source);
        Start();
        await PumpAsync();
        return Info();
    }

    public Task<JobInfo?> GetAsync()
    {
        if (!Running)
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
            Log.JobEnded(logger, JobId, JobState.Cancelled, Answered, record.State.Total);
            DeactivateOnIdle();
        }
        return Info();
    }

    public async Task DeleteAsync()
    {
        EnsureExists();
        Stop();
        _unwritten.Clear();
        for (var c = 0; c < ChunkCount; c++)
        {
            await ClearAsync<JobItemChunk>(ItemsKey(c));
            for (var p = 0; ; p++)
            {
                if (!await ClearAsync<JobResultPart>(PartKey(c, p)))
                {
                    break;
                }
            }
        }
        await record.ClearStateAsync();
        record.State = new JobRecord();
        await GrainFactory.GetGrain<IJobIndexGrain>(0).RemoveAsync(JobId);
        DeactivateOnIdle();
    }

    public Task<JobItemResult[]> GetResultsAsync() => GetResultsAsync(0, int.MaxValue);

    public async Task<JobItemResult[]> GetResultsAsync(int offset, int count)
    {
        EnsureExists();
        if (record.State.State != JobState.Running)
        {
            DeactivateOnIdle();
        }
        offset = Math.Max(0, offset);
        var end = (int)Math.Min(record.State.Total, (long)offset + Math.Max(0, count));
        var found = new SortedDictionary<int, JobItemResult>();
        for (var c = offset / Math.Max(1, record.State.ChunkSize); offset < end && c * record.State.ChunkSize < end; c++)
        {
            for (var p = 0; ; p++)
            {
                var part = await ReadAsync<JobResultPart>(PartKey(c, p));
                if (part is null)
                {
                    break;
                }
                if (!part.Indexes.Any(i => i >= offset && i < end))
                {
                    continue; // nothing in range: not decrypted
                }
                var results = ResultsOf(part);
                for (var k = 0; k < part.Indexes.Length; k++)
                {
                    if (part.Indexes[k] >= offset && part.Indexes[k] < end)
                    {
                        found.TryAdd(part.Indexes[k], results[k]);
                    }
                }
            }
        }
        foreach (var (index, result) in _unwritten)
        {
            if (index >= offset && index < end)
            {
                found.TryAdd(index, result);
            }
        }
        return [.. found.Values];
    }

    public async Task ReportAsync(long delivery, int[] indexes, JobItemResult[] answers, JobRetry? retryLater = null)
    {
        if (StayOnlyWhileRunning())
        {
            return; // cancelled, deleted or completed meanwhile: a late answer
        }
        _open.Remove(delivery);
        for (var k = 0; k < answers.Length && k < indexes.Length; k++)
        {
            Answer(indexes[k], answers[k]);
        }
        foreach (var index in retryLater?.Indexes ?? [])
        {
            RetryLater(index, retryLater!.Reason);
        }
        SampleRate();
        if (Answered >= record.State.Total)
        {
            await CompleteAsync();
            return;
        }
        await PumpAsync();
        if (_unwritten.Count > 0 && Stopwatch.GetElapsedTime(_lastFlush) >= FlushEvery)
        {
            await FlushAsync();
        }
    }

    public Task<bool> RenewAsync(long delivery)
    {
        if (_open.TryGetValue(delivery, out var open))
        {
            _open[delivery] = (open.Items, Stopwatch.GetTimestamp());
            return Task.FromResult(true);
        }
        StayOnlyWhileRunning(); // a worker renewing a delivery of a job that ended (or was deleted) meanwhile
        return Task.FromResult(false);
    }

    public async Task ResumeAsync()
    {
        if (StayOnlyWhileRunning())
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

    /// <summary>De-duplicated by position: a redelivered item's second answer is dropped.</summary>
    private void Answer(int index, JobItemResult result)
    {
        if (index < 0 || index >= _answered.Length || _answered[index])
        {
            return;
        }
        _answered[index] = true;
        _unwritten.Add((index, result));
        if (result.Error is null)
        {
            record.State.Succeeded++;
        }
        else
        {
            record.State.Failed++;
        }
    }

    /// <summary>
    /// An item a worker could not run through no fault of its own (the runtime failed): sent again after a pause that
    /// grows with its sends; once it has been sent <see cref="MaxAttempts"/> times, that failure is its error.
    /// </summary>
    private void RetryLater(int index, string reason)
    {
        if (index < 0 || index >= _answered.Length || _answered[index])
        {
            return;
        }
        var sends = record.State.Attempts.GetValueOrDefault(index, 1);
        if (sends >= MaxAttempts)
        {
            Answer(index, new JobItemResult(ItemIdOf(index), null, $"not run after {sends} attempts: {reason}"));
            record.State.Attempts.Remove(index);
            return;
        }
        _later.Add((index, Stopwatch.GetTimestamp() + (long)(RetryLaterStep.TotalSeconds * sends * Stopwatch.Frequency)));
    }

    /// <summary>Items whose pause is over join those to send again.</summary>
    private void QueueDueRetries()
    {
        var now = Stopwatch.GetTimestamp();
        for (var k = _later.Count - 1; k >= 0; k--)
        {
            if (_later[k].Due <= now)
            {
                _retry.Enqueue(_later[k].Index);
                _later.RemoveAt(k);
            }
        }
    }

    /// <summary>Rebuilds the answered bits and counters from the stored result parts (after a crash or a restart).</summary>
    private async Task LoadAnsweredAsync()
    {
        _answered = new BitArray(record.State.Total);
        _parts = new int[ChunkCount];
        int succeeded = 0, failed = 0;
        for (var c = 0; c < ChunkCount; c++)
        {
            for (var p = 0; ; p++)
            {
                var part = await ReadAsync<JobResultPart>(PartKey(c, p));
                if (part is null)
                {
                    _parts[c] = p;
                    break;
                }
                var results = ResultsOf(part);
                for (var k = 0; k < part.Indexes.Length; k++)
                {
                    if (!_answered[part.Indexes[k]])
                    {
                        _answered[part.Indexes[k]] = true;
                        _ = results[k].Error is null ? succeeded++ : failed++;
                    }
                }
            }
        }
        record.State.Succeeded = succeeded;
        record.State.Failed = failed;
    }

    private void Start()
    {
        _retry.Clear();
        _later.Clear();
        _open.Clear();
        _cursor = 0;
        _stream = this.GetStreamProvider(JobStreams.Provider).GetStream<JobWork>(StreamId.Create(JobStreams.Namespace, JobId));
        _timer ??= this.RegisterGrainTimer(OnTimerAsync, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(1));
        _lastFlush = Stopwatch.GetTimestamp();
    }

    private void Stop()
    {
        _timer?.Dispose();
        _timer = null;
        _retry.Clear();
        _later.Clear();
        _open.Clear();
        _itemCache.Clear();
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
        QueueDueRetries();
        if (Answered >= record.State.Total)
        {
            await CompleteAsync();
            return;
        }
        await PumpAsync();
        if (_unwritten.Count > 0)
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
                foreach (var index in open.Items.Where(i => !_answered[i]))
                {
                    _retry.Enqueue(index);
                    record.State.Redeliveries++;
                }
            }
        }
        Log.JobRedelivered(logger, JobId, deliveries.Count);
    }

    /// <summary>The next positions to send: items sent before and not answered first, then new ones.</summary>
    private List<int> NextIndexes()
    {
        var indexes = new List<int>(DeliverySize);
        while (indexes.Count < DeliverySize && _retry.TryDequeue(out var again))
        {
            if (_answered[again])
            {
                continue;
            }
            var attempts = record.State.Attempts.GetValueOrDefault(again, 1) + 1;
            if (attempts > MaxAttempts)
            {
                // Sent MaxAttempts times and never answered: give it up with a permanent error of its own.
                Answer(again, new JobItemResult(ItemIdOf(again), null, $"no answer after {MaxAttempts} attempts; the item was not run"));
                record.State.Attempts.Remove(again);
                continue;
            }
            record.State.Attempts[again] = attempts;
            indexes.Add(again);
        }
        while (indexes.Count < DeliverySize && _cursor < record.State.Total)
        {
            var index = _cursor++;
            if (!_answered[index])
            {
                indexes.Add(index);
            }
        }
        return indexes;
    }

    private string ItemIdOf(int index) =>
        _itemCache.TryGetValue(index / record.State.ChunkSize, out var chunk) ? chunk[index % record.State.ChunkSize].Id : $"#{index + 1}";

    private async Task<JobItem> ItemAsync(int index)
    {
        var c = index / record.State.ChunkSize;
        if (!_itemCache.TryGetValue(c, out var chunk))
        {
            if (_itemCache.Count >= 3)
            {
                _itemCache.Remove(_itemCache.Keys.Min());
            }
            chunk = ItemsOf(await ReadAsync<JobItemChunk>(ItemsKey(c))
                ?? throw new InvalidOperationException($"job {JobId}: item chunk {c} is missing"));
            _itemCache[c] = chunk;
        }
        return chunk[index % record.State.ChunkSize];
    }

    /// <summary>Sends deliveries while fewer than the window are open.</summary>
    private async Task PumpAsync()
    {
        while (_stream is not null && _open.Count < DeliveriesInFlight && (_retry.Count > 0 || _cursor < record.State.Total))
        {
            var indexes = NextIndexes();
            if (indexes.Count == 0)
            {
                if (Answered >= record.State.Total)
                {
                    await CompleteAsync();
                }
                break;
            }
            var items = new JobItem[indexes.Count];
            for (var k = 0; k < items.Length; k++)
            {
                items[k] = await ItemAsync(indexes[k]);
            }
            var delivery = ++_nextDelivery;
            var sent = indexes.ToArray();
            _open[delivery] = (sent, Stopwatch.GetTimestamp());
            try
            {
                await _stream.OnNextAsync(new JobWork(JobId, delivery, record.State.Model, record.State.Version, items,
                    record.State.Outputs, sent, record.State.RowsPerRequest));
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
        if (record.State.State != JobState.Running)
        {
            return;
        }
        Stop();
        record.State.State = JobState.Completed;
        await FlushAsync();
        Log.JobEnded(logger, JobId, JobState.Completed, Answered, record.State.Total);
        // An ended job need not hold anything in memory: it reads its record back when asked.
        _answered = new BitArray(0);
        DeactivateOnIdle();
    }

    /// <summary>Appends the unwritten answers as new result parts (one per item chunk), then the record.</summary>
    private async Task FlushAsync()
    {
        if (_unwritten.Count > 0)
        {
            try
            {
                foreach (var group in _unwritten.GroupBy(u => u.Index / record.State.ChunkSize))
                {
                    var part = new JobResultPart { Indexes = [.. group.Select(u => u.Index)], Sealed = Seal<JobItemResult[]>([.. group.Select(u => u.Result)]) };
                    await WriteNewAsync(PartKey(group.Key, _parts[group.Key]), part);
                    _parts[group.Key]++;
                    _unwritten.RemoveAll(u => u.Index / record.State.ChunkSize == group.Key);
                }
            }
            catch (InconsistentStateException)
            {
                // A part was written but not acknowledged: start over from what storage holds.
                DeactivateOnIdle();
                throw;
            }
        }
        record.State.UpdatedAt = DateTimeOffset.UtcNow;
        await record.WriteStateAsync();
        _lastFlush = Stopwatch.GetTimestamp();
        await PublishAsync();
    }

    /// <summary>Tells the job index this job's summary (after each flush: at most once a second, and at the end).</summary>
    private Task PublishAsync() => GrainFactory.GetGrain<IJobIndexGrain>(0).SetAsync(Info());

    private int ChunkCount => record.State.ChunkSize == 0 ? 0 : (record.State.Total + record.State.ChunkSize - 1) / record.State.ChunkSize;

    private static string ItemsKey(int chunk) => $"job-items-{chunk}";

    private static string PartKey(int chunk, int part) => $"job-results-{chunk}-{part}";

    private sealed class Slot<T> : IGrainState<T>
    {
        [System.Diagnostics.CodeAnalysis.AllowNull]
        public T State { get; set; } = default!;
        public string? ETag { get; set; }
        public bool RecordExists { get; set; }
    }

    private async Task<T?> ReadAsync<T>(string name) where T : class
    {
        var slot = new Slot<T>();
        await Storage.ReadStateAsync(name, this.GetGrainId(), slot);
        return slot.RecordExists ? slot.State : null;
    }

    private Task WriteNewAsync<T>(string name, T value) =>
        Storage.WriteStateAsync(name, this.GetGrainId(), new Slot<T> { State = value });

    private async Task WriteOverAsync<T>(string name, T value)
    {
        var slot = new Slot<T>();
        await Storage.ReadStateAsync(name, this.GetGrainId(), slot);
        slot.State = value;
        await Storage.WriteStateAsync(name, this.GetGrainId(), slot);
    }

    private async Task<bool> ClearAsync<T>(string name)
    {
        var slot = new Slot<T>();
        await Storage.ReadStateAsync(name, this.GetGrainId(), slot);
        if (!slot.RecordExists)
        {
            return false;
        }
        await Storage.ClearStateAsync(name, this.GetGrainId(), slot);
        return true;
    }

    /// <summary>SHA-256 over what the job would run: model, version, outputs and every item's id and tensors.</summary>
    internal static string ContentHash(JobSubmission submission)
    {
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        // Each text is hashed as its UTF-8 bytes and a zero, encoded into one reused buffer (a byte array per id and per
        // tensor name of 200,000 items was ~40 MB).
        var buffer = new byte[256];
        void Reserve(int bytes)
        {
            if (buffer.Length < bytes)
            {
                buffer = new byte[bytes];
            }
        }
        void Text(string? text)
        {
            text ??= "\0";
            Reserve(System.Text.Encoding.UTF8.GetMaxByteCount(text.Length) + 1);
            var n = System.Text.Encoding.UTF8.GetBytes(text, buffer);
            buffer[n] = 0;
            hash.AppendData(buffer, 0, n + 1);
        }
        void Shape(long[] shape)
        {
            // The bytes Text(string.Join(',', shape)) would hash, without the string (a long is at most 20 characters).
            Reserve((shape.Length * 21) + 1);
            var n = 0;
            for (var d = 0; d < shape.Length; d++)
            {
                if (d > 0)
                {
                    buffer[n++] = (byte)',';
                }
                shape[d].TryFormat(buffer.AsSpan(n), out var written, default, System.Globalization.CultureInfo.InvariantCulture);
                n += written;
            }
            buffer[n] = 0;
            hash.AppendData(buffer, 0, n + 1);
        }
        Text(submission.Model);
        Text(submission.Version);
        Text(string.Join(',', submission.Outputs ?? []));
        foreach (var item in submission.Items)
        {
            Text(item.Id);
            if (item.Error is not null)
            {
                Text(item.Error);
            }
            foreach (var tensor in item.Inputs)
            {
                Text(tensor.Name);
                Text(tensor.Datatype.ToString());
                Shape(tensor.Shape);
                hash.AppendData(tensor.Data);
            }
        }
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private void EnsureExists()
    {
        if (!record.RecordExists)
        {
            Leave.Touch();
            throw MedServeException.NotFound("no such job");
        }
    }

    /// <summary>
    /// Job grains are never collected when idle (<see cref="CollectionAgeLimitAttribute"/>: a running job must keep
    /// feeding its items), so a call that finds no job, or one that has ended (a worker's late answer or renewal, a
    /// retried submit), lets the activation go itself once such calls stop (<see cref="LeaveWhenQuiet"/>: a cancelled
    /// job's open deliveries answer in a burst). True when the job is not running.
    /// </summary>
    private bool StayOnlyWhileRunning()
    {
        if (Running)
        {
            return false;
        }
        Leave.Touch();
        return true;
    }

    private LeaveWhenQuiet? _leave;

    private LeaveWhenQuiet Leave => _leave ??= new(this, DeactivateOnIdle, LeaveWhenQuiet.Default, () => !Running);

    /// <summary>A job exists here and is running (feeding and taking answers).</summary>
    private bool Running => record.RecordExists && record.State.State == JobState.Running;

    /// <summary>Keeps (time, answered) samples of the last ten seconds, for the rate and the ETA.</summary>
    private long SampleRate()
    {
        var now = Stopwatch.GetTimestamp();
        if (_rate.Count == 0 || Stopwatch.GetElapsedTime(_rate.Last().At, now) > TimeSpan.FromMilliseconds(100))
        {
            _rate.Enqueue((now, Answered));
        }
        while (_rate.Count > 1 && Stopwatch.GetElapsedTime(_rate.Peek().At, now) > TimeSpan.FromSeconds(10))
        {
            _rate.Dequeue();
        }
        return now;
    }

    private JobInfo Info()
    {
        var count = Answered;
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
            Succeeded = record.State.Succeeded,
            Failed = record.State.Failed,
            ItemsPerSecond = Math.Round(rate, 1),
            EtaSeconds = record.State.State == JobState.Running && rate > 0 ? Math.Round(remaining / rate, 1) : null,
            CreatedAt = record.State.CreatedAt,
            UpdatedAt = record.State.UpdatedAt,
            Source = record.State.Source,
            Silo = silo.SiloAddress.ToParsableString(),
            Redeliveries = record.State.Redeliveries,
            Owner = record.State.Owner,
        };
    }
}
