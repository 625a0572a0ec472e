using System.Threading.Channels;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MedServe.Dashboard.Security;

/// <summary>
/// Takes audit events from the front ends of this host and appends them to the cluster's trail in batches (one
/// grain call per batch, at most every 200 ms), so auditing every inference costs a hash and a queue write per
/// request, not a storage write. A batch that cannot be written is retried; events wait in memory meanwhile (up to
/// <see cref="Capacity"/>; beyond that they are counted and logged as lost, never blocking a request).
/// </summary>
public sealed partial class AuditWriter(IGrainFactory grains, TimeProvider clock, ILogger<AuditWriter> logger, Microsoft.Extensions.Options.IOptions<SecurityOptions> security,
    IHostApplicationLifetime lifetime) : BackgroundService
{
    /// <summary>Whether inferences are audited (<see cref="SecurityOptions.AuditInference"/>; on unless a measurement turns it off).</summary>
    public bool AuditsInference { get; } = security.Value.AuditInference;

    public const int Capacity = 200_000;

    private static readonly TimeSpan FlushEvery = TimeSpan.FromMilliseconds(200);
    private const int BatchSize = 2048;

    // Events wait here as values: an inference's fields inline (names shared, the input's digest as bytes), so the
    // thousands waiting for the next batch under load allocate nothing that outlives the young generation.
    private readonly Channel<Pending> _queue = Channel.CreateBounded<Pending>(new BoundedChannelOptions(Capacity)
    {
        FullMode = BoundedChannelFullMode.DropWrite,
        SingleReader = true,
    });

    private readonly List<(long Target, TaskCompletionSource Done)> _flushes = [];
    private long _lost;
    private long _recorded;
    private long _written;

    /// <summary>Events written to the trail by this host so far.</summary>
    public long Written => Interlocked.Read(ref _written);

    public void Record(AuditEvent e)
    {
        if (e.At == default)
        {
            e = e with { At = clock.GetUtcNow() };
        }
        Enqueue(new Pending(e, default));
    }

    /// <summary>
    /// Records an inference by the caller of <paramref name="context"/> on <paramref name="model"/> (a name that is not a
    /// valid model name is recorded as <c>(unknown)</c>): the version that served it (or the one asked for), the input's
    /// digest, the front end's outcome (<c>success</c> is recorded as <c>ok</c>) and which front end (<paramref name="detail"/>).
    /// </summary>
    public void RecordInference(HttpContext context, string model, string? version, in InputDigest input, string outcome, string? detail = null) =>
        Enqueue(new Pending(null, new InferenceNote(clock.GetUtcNow(), context.User.KeyIdOf(), ModelOf(model)!, VersionOf(version), input,
            outcome == "success" ? "ok" : Shared(outcome), detail)));

    /// <summary>
    /// A model name or version as the trail keeps it: as given when it is a valid one (a short plain name), else
    /// <c>(unknown)</c>. A path segment or a body field is whatever its caller wrote, and the trail is kept for good
    /// (its records are chained: free text in one could not be taken out).
    /// </summary>
    private string? ModelOf(string? model) => model is null ? null : ModelNames.IsValidName(model) ? Shared(model) : "(unknown)";

    /// <inheritdoc cref="ModelOf"/>
    private string? VersionOf(string? version) => version is null ? null : ModelNames.IsValidVersion(version) ? Shared(version) : "(unknown)";

    private void Enqueue(in Pending pending)
    {
        lock (_flushes)
        {
            if (_queue.Writer.TryWrite(pending))
            {
                _recorded++;
                return;
            }
        }
        Interlocked.Increment(ref _lost);
    }

    /// <summary>One instance of each name the trail sees (model names, versions, outcomes): the request's copy dies young.</summary>
    private string Shared(string name)
    {
        if (_names.TryGetValue(name, out var shared))
        {
            return shared;
        }
        return _names.Count < MaxSharedNames ? _names.GetOrAdd(name, name) : name;
    }

    private const int MaxSharedNames = 4096;
    private readonly System.Collections.Concurrent.ConcurrentDictionary<string, string> _names = new(StringComparer.Ordinal);

    /// <summary>An event waiting for its batch: a whole <see cref="AuditEvent"/>, or an inference's fields.</summary>
    private readonly record struct Pending(AuditEvent? Event, InferenceNote Inference)
    {
        public AuditEvent ToEvent() => Event ?? Inference.ToEvent();
    }

    private readonly record struct InferenceNote(DateTimeOffset At, string Actor, string Model, string? Version, InputDigest Input, string Outcome, string? Detail)
    {
        public AuditEvent ToEvent() => new()
        {
            At = At, Actor = Actor, Action = AuditActions.Infer, Model = Model, Version = Version, InputSha256 = Input.ToHex(), Outcome = Outcome, Detail = Detail,
        };
    }

    /// <summary>Records an action of the caller of <paramref name="context"/>.</summary>
    public void Record(HttpContext context, string action, string? model = null, string? version = null, string? inputSha256 = null, string outcome = "ok", string? detail = null) =>
        Record(new AuditEvent
        {
            At = clock.GetUtcNow(),
            Actor = context.User.KeyIdOf(),
            Action = action,
            Model = ModelOf(model),
            Version = VersionOf(version),
            InputSha256 = inputSha256,
            Outcome = outcome,
            Detail = detail,
        });

    /// <summary>Completes once everything recorded before the call is in the trail.</summary>
    public Task FlushAsync()
    {
        lock (_flushes)
        {
            if (Interlocked.Read(ref _written) >= _recorded)
            {
                return Task.CompletedTask;
            }
            var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            _flushes.Add((_recorded, done));
            return done.Task;
        }
    }

    private void Flushed()
    {
        lock (_flushes)
        {
            var written = Interlocked.Read(ref _written);
            foreach (var f in _flushes.Where(f => f.Target <= written).ToList())
            {
                f.Done.TrySetResult();
                _flushes.Remove(f);
            }
        }
    }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        // Stopping: write what is queued while the silo (or the client's connection) is still up; hosted services stop
        // in reverse order, and the silo may stop before this service does.
        lifetime.ApplicationStopping.Register(() =>
        {
            try
            {
                FlushAsync().Wait(TimeSpan.FromSeconds(5));
            }
            catch (AggregateException)
            {
            }
        });
        var batch = new List<AuditEvent>(BatchSize);
        var delay = FlushEvery;
        var stopRounds = 0;
        while (true)
        {
            try
            {
                if (!await _queue.Reader.WaitToReadAsync(stoppingToken))
                {
                    return;
                }
            }
            catch (OperationCanceledException)
            {
                // Stopping: write what is left, once.
                _queue.Writer.TryComplete();
            }
            while (batch.Count < BatchSize && _queue.Reader.TryRead(out var e))
            {
                batch.Add(e.ToEvent());
            }
            if (batch.Count > 0)
            {
                try
                {
                    await grains.GetGrain<IAuditLogGrain>(0).AppendAsync([.. batch]);
                    Interlocked.Add(ref _written, batch.Count);
                    batch.Clear();
                    Flushed();
                    delay = FlushEvery;
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    WriteFailed(logger, batch.Count, e.GetType().Name);
                    delay = TimeSpan.FromSeconds(Math.Min(10, delay.TotalSeconds * 2));
                }
            }
            if (Interlocked.Exchange(ref _lost, 0) is > 0 and var lost)
            {
                Lost(logger, lost);
            }
            if (stoppingToken.IsCancellationRequested)
            {
                if ((batch.Count == 0 && _queue.Reader.Count == 0) || ++stopRounds > 3)
                {
                    return;
                }
                continue;
            }
            if (_queue.Reader.Count < BatchSize)
            {
                try
                {
                    await Task.Delay(delay, clock, stoppingToken);
                }
                catch (OperationCanceledException)
                {
                }
            }
        }
    }

    [LoggerMessage(4101, LogLevel.Warning, "Could not append {Count} audit record(s) ({ExceptionType}); retrying")]
    private static partial void WriteFailed(ILogger logger, int count, string exceptionType);

    [LoggerMessage(4102, LogLevel.Error, "{Count} audit event(s) were lost: the queue was full")]
    private static partial void Lost(ILogger logger, long count);
}
