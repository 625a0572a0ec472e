using System.Buffers;
using System.Diagnostics;
using MedServe.Telemetry;

namespace MedServe.Inference.Runtime;

/// <summary>
/// One replica's queue in front of its ONNX Runtime session: requests from every front end (HTTP, the grain
/// client, job items) meet here and run as batches.
/// <list type="bullet">
/// <item>Online requests go before job items; a batch led by an online request may be filled with job items of
/// the same shape, which never delays the online one.</item>
/// <item>Requests are grouped by the shape of their non-batch dimensions; a request whose shape matches no other
/// runs alone, it is never rejected for it.</item>
/// <item>A batch leaves when it is full, reaches a preferred size, or its oldest request has waited
/// <c>max_queue_delay</c>. The batcher waits only when company is expected: requests have recently arrived while
/// others were queued or running, more often than the delay left. A lone request (a closed loop of one caller,
/// or low load) runs at once, so low traffic pays no fixed delay.</item>
/// <item>A request's timeout runs from its arrival; one that expires in the queue is answered with a timeout
/// error at that moment and never runs. A request whose caller has given up (its cancellation token: the HTTP client
/// went away, or the grain call timed out and Orleans cancelled it) is skipped at dispatch, never run.</item>
/// <item>The queue is bounded by requests (<c>max_queue_size</c>) and by the bytes of their inputs
/// (<c>max_queue_bytes</c>); job items may fill only half of either, so online requests still find room. Over a
/// bound: 429. Requests nobody waits for any more are dropped before a new one is refused.</item>
/// <item>A batch the model refuses as input (<see cref="ErrorKind.InvalidInput"/>) is split in halves until the
/// requests that cause it are alone: only they fail. A runtime failure that is not the input's fault (out of memory,
/// an execution provider error: <see cref="ErrorKind.Unavailable"/>, 503) fails every request of the batch at once,
/// unsplit: splitting would only run the failing session again and blame nobody.</item>
/// <item>Stopping drains: queued and running requests finish; then the session is freed.</item>
/// <item>Traces: a request that arrives under a sampled span (the replica's grain call) gets two spans of its own under
/// it, recorded when its batch runs: <c>medserve.queue</c> (arrival to run, with the wait) and <c>medserve.run</c> (the
/// ONNX Runtime run that answered it, with the batch's rows and requests). A batch holds requests of many traces, so
/// each sampled request records the run in its own trace rather than one run span linked to all of them: every trace
/// reads whole on its own, and requests that were not sampled cost nothing.</item>
/// <item>Time comes from a <see cref="TimeProvider"/> (the system's in production), so tests drive the queue delay
/// and timeouts on a clock of their own.</item>
/// </list>
/// </summary>
public sealed class DynamicBatcher : IBatcher, IPoolWork
{
    private static readonly TimeSpan DrainTimeout = TimeSpan.FromSeconds(30);

    private readonly IModelRunner _model;
    private readonly TimeProvider _time;

    /// <summary>The replica this batcher serves (its grain key), named in every response.</summary>
    private readonly string? _replica;
    private readonly ExecutionPool _pool;
    private readonly bool _ownsPool;
    private readonly ITimer _companyTimer;
    private readonly Lock _gate = new();
    private readonly LinkedList<Item>[] _queues = [new(), new()]; // indexed by RequestPriority
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _scheduled; // 1 while this batcher waits in the pool's ready queue
    private int _runningBatches; // guarded by _gate
    private double _meanRunSeconds = double.MaxValue; // smoothed wall time of a run per request; racy updates are fine
    private GroupKey? _lastGroup; // the group key of the last request's shape; racy updates are fine

    /// <summary>Runs shorter than this on average may run on the thread of the request that found the queue empty.</summary>
    public static readonly TimeSpan InlineRunLimit = TimeSpan.FromMilliseconds(0.5);
    private volatile BatchingPolicy _policy;
    private volatile bool _unsplittable; // an output turned out not to follow the batch dimension
    private int _queued;  // guarded by _gate
    private long _queuedBytes; // guarded by _gate: input bytes of the queued requests
    private int _watched; // guarded by _gate: queued requests that carry a timeout or a cancellation token
    private int _running; // guarded by _gate
    private bool _stopping; // guarded by _gate
    private long _lastCompanyArrival; // guarded by _gate: last arrival that found others queued or running
    private double _companyGap = double.MaxValue; // guarded by _gate: smoothed gap between such arrivals (ticks)
    private int _disposed;

    /// <summary>A batcher whose runs go to <paramref name="pool"/>, the silo's ONNX Runtime threads.</summary>
    public DynamicBatcher(IModelRunner model, BatchingPolicy policy, ExecutionPool pool, string? replica = null, TimeProvider? time = null)
        : this(model, policy, pool, ownsPool: false, replica, time)
    {
    }

    /// <summary>A batcher with a pool of <paramref name="executors"/> threads of its own (tests, tools).</summary>
    public DynamicBatcher(IModelRunner model, BatchingPolicy policy, int executors, string? replica = null, TimeProvider? time = null)
        : this(model, policy, new ExecutionPool(executors), ownsPool: true, replica, time)
    {
    }

    private DynamicBatcher(IModelRunner model, BatchingPolicy policy, ExecutionPool pool, bool ownsPool, string? replica, TimeProvider? time)
    {
        _model = model;
        _time = time ?? TimeProvider.System;
        _replica = replica;
        _policy = policy;
        _pool = pool;
        _ownsPool = ownsPool;
        // Fires when the oldest request has waited for company long enough. Created without the caller's context: its
        // span must not become the parent of what the timer starts.
        using (ExecutionContext.SuppressFlow())
        {
            _companyTimer = _time.CreateTimer(static state => ((DynamicBatcher)state!).Schedule(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
        }
    }

    public int InFlight
    {
        get
        {
            lock (_gate)
            {
                return _queued + _running;
            }
        }
    }

    /// <summary>Requests waiting (not yet running).</summary>
    public int Queued
    {
        get
        {
            lock (_gate)
            {
                return _queued;
            }
        }
    }

    /// <summary>Input bytes of the requests waiting.</summary>
    public long QueuedBytes
    {
        get
        {
            lock (_gate)
            {
                return _queuedBytes;
            }
        }
    }

    public void UpdatePolicy(BatchingPolicy policy)
    {
        _policy = policy;
        Schedule();
    }

    /// <summary>
    /// Queues a request. <paramref name="cancellationToken"/> says the caller has given up (its HTTP connection closed,
    /// its grain call timed out): a request cancelled before it runs is never run, and its task is cancelled.
    /// </summary>
    public Task<InferenceResponse> EnqueueAsync(InferenceRequest request, CancellationToken cancellationToken = default, TimeSpan callTimeout = default)
    {
        try
        {
            _model.Validate(request);
        }
        catch (MedServeException e)
        {
            return Task.FromException<InferenceResponse>(e);
        }
        if (cancellationToken.IsCancellationRequested)
        {
            return Task.FromCanceled<InferenceResponse>(cancellationToken);
        }
        var policy = _policy;
        var now = _time.GetTimestamp();
        var timeout = Math.Min(request.TimeoutMicroseconds > 0 ? request.TimeoutMicroseconds : policy.DefaultTimeoutMicroseconds, BatchingPolicy.MaxTimeoutMicroseconds);
        var deadline = timeout > 0 ? now + (long)(timeout * (_time.TimestampFrequency / 1_000_000.0)) : 0;
        var item = new Item(request, GroupOf(request), RowsOf(request), BytesOf(request), now, timeout, deadline, cancellationToken)
        {
            Trace = MedServeTracing.SampledParent(),
            CallDeadline = callTimeout > TimeSpan.Zero ? now + (long)(callTimeout.TotalSeconds * _time.TimestampFrequency) : 0,
        };
        MedServeException? refused;
        List<Item>? dropped = null;
        var inline = false;
        lock (_gate)
        {
            refused = _stopping ? MedServeException.NotReady($"{Name} is unloading on this replica") : Refusal(item, policy);
            if (refused is { Kind: ErrorKind.Overloaded } && _watched > 0)
            {
                // Make room first: requests nobody waits for any more never keep a live one out.
                dropped = TakeGivenUp(now);
                refused = dropped is null ? refused : Refusal(item, policy);
            }
            if (refused is null)
            {
                if (_queued + _running > 0)
                {
                    if (_lastCompanyArrival != 0)
                    {
                        var gap = now - _lastCompanyArrival;
                        _companyGap = _companyGap == double.MaxValue ? gap : (0.8 * _companyGap) + (0.2 * gap);
                    }
                    _lastCompanyArrival = now;
                }
                if (_queued == 0 && _runningBatches < RunsAtOnce(policy) && ShortRuns && (policy.MaxQueueDelayMicroseconds == 0 || policy.MaxBatchSize == 1)
                    && _pool.TryEnterInline())
                {
                    // Nothing waiting and runs this short: run it now on the caller's thread. No hand-over to a pool
                    // thread and back, and the answer is there when the caller looks. Not when the policy asks batches to
                    // wait for company (a queue delay): that request goes through the queue's rules.
                    inline = true;
                    _running++;
                    _runningBatches++;
                }
                else
                {
                    item.Node = _queues[(int)request.Priority].AddLast(item);
                    _queued++;
                    _queuedBytes += item.Bytes;
                    _watched += item.Watched ? 1 : 0;
                }
            }
        }
        Fail(dropped);
        if (refused is not null)
        {
            return Task.FromException<InferenceResponse>(refused);
        }
        if (inline)
        {
            RunInline(item);
            return item.Completion.Task;
        }
        if (item.Expiry != 0)
        {
            // Only for a request that waits: one run at once needs no timer. Outside the lock: a timer that fires at
            // once runs Expire, which takes the lock. A timer started after the request was already taken to run finds
            // it gone and does nothing.
            item.StartTimer(TimeSpan.FromSeconds((item.Expiry - now) / (double)_time.TimestampFrequency), _time, Expire);
            lock (_gate)
            {
                if (item.Node is null)
                {
                    item.StopTimer(); // taken to run (or expired) before its timer existed
                }
            }
        }
        Schedule();
        return item.Completion.Task;
    }

    private string Name => $"{_model.Manifest.Name}:{_model.Manifest.Version}";

    /// <summary>Batches this replica may run at once: the policy's <c>max_concurrent_runs</c>, at most the pool's threads.</summary>
    private int RunsAtOnce(BatchingPolicy policy) =>
        policy.MaxConcurrentRuns > 0 ? Math.Min(policy.MaxConcurrentRuns, _pool.Size) : _pool.Size;

    /// <summary>
    /// Under the lock: why this request may not be queued now (429), or null. Job items may use half of each bound.
    /// An empty queue takes one request of any size: the byte bound must never refuse a request forever.
    /// </summary>
    private MedServeException? Refusal(Item item, BatchingPolicy policy)
    {
        var job = item.Request.Priority == RequestPriority.Job;
        var half = job ? ", job items may use half" : "";
        var limit = job ? Math.Max(1, policy.MaxQueueSize / 2) : policy.MaxQueueSize;
        if (_queued >= limit)
        {
            return MedServeException.Overloaded(
                $"{Name}: the queue is full ({_queued} waiting, max_queue_size {policy.MaxQueueSize}{half}); retry shortly");
        }
        var maxBytes = policy.MaxQueueBytes > 0 ? policy.MaxQueueBytes : BatchingPolicy.DefaultMaxQueueBytes;
        var byteLimit = job ? Math.Max(1, maxBytes / 2) : maxBytes;
        if (_queued > 0 && _queuedBytes + item.Bytes > byteLimit)
        {
            return MedServeException.Overloaded(
                $"{Name}: the queue is full by size ({_queuedBytes} bytes waiting, this request {item.Bytes}, max_queue_bytes {maxBytes}{half}); retry shortly");
        }
        return null;
    }

    private static long BytesOf(InferenceRequest request)
    {
        long bytes = 0;
        foreach (var t in request.Inputs)
        {
            bytes += t.Data.Length;
        }
        return bytes;
    }

    private int RowsOf(InferenceRequest request)
    {
        if (!_model.Batchable)
        {
            return 1;
        }
        var rows = request.Inputs[0].Shape[0];
        foreach (var t in request.Inputs)
        {
            if (t.Shape[0] != rows)
            {
                return int.MaxValue;
            }
        }
        return (int)Math.Min(rows, int.MaxValue);
    }

    /// <summary>Requests stack only when every input's non-batch dimensions agree.</summary>
    private string GroupOf(InferenceRequest request)
    {
        var inputs = request.Inputs;
        if (!_model.Batchable || inputs.Length == 0)
        {
            return "";
        }
        foreach (var t in inputs)
        {
            if (t.Shape.Length == 0 || t.Shape[0] != inputs[0].Shape[0])
            {
                return "";
            }
        }
        // Most requests to a replica have the shape of the last one: give them its key without building it again.
        var last = _lastGroup;
        if (last is not null && last.Matches(inputs))
        {
            return last.Key;
        }
        var key = new System.Text.StringBuilder();
        foreach (var t in inputs.OrderBy(t => t.Name, StringComparer.Ordinal))
        {
            key.Append(t.Name).Append(':');
            for (var d = 1; d < t.Shape.Length; d++)
            {
                key.Append(t.Shape[d]).Append(',');
            }
            key.Append(';');
        }
        var made = new GroupKey(inputs, key.ToString());
        _lastGroup = made; // another thread may replace it at once: answer from the local
        return made.Key;
    }

    /// <summary>A group key and the input names and non-batch dimensions it was made of (in the request's order).</summary>
    private sealed class GroupKey(Tensor[] inputs, string key)
    {
        private readonly (string Name, long[] Dims)[] _inputs = [.. inputs.Select(t => (t.Name, t.Shape[1..]))];

        public string Key { get; } = key;

        public bool Matches(Tensor[] inputs)
        {
            if (inputs.Length != _inputs.Length)
            {
                return false;
            }
            for (var i = 0; i < inputs.Length; i++)
            {
                if (!string.Equals(inputs[i].Name, _inputs[i].Name, StringComparison.Ordinal)
                    || !inputs[i].Shape.AsSpan(1).SequenceEqual(_inputs[i].Dims))
                {
                    return false;
                }
            }
            return true;
        }
    }

    /// <summary>Timer path: a request expires the moment its timeout passes, even while every executor is busy.</summary>
    private void Expire(Item item)
    {
        lock (_gate)
        {
            if (item.Node is null)
            {
                return; // already running: it will be answered
            }
            Remove(item);
        }
        Fail([item]);
    }

    /// <summary>
    /// Dispatch path (and a full queue), under the lock: requests whose timeout has passed are taken out even if their
    /// timer has not fired yet (timers run late on a busy machine), so none runs after its deadline; so are requests
    /// whose caller has given up (cancelled), so no executor runs work nobody will read.
    /// </summary>
    private List<Item>? TakeGivenUp(long now)
    {
        List<Item>? given = null;
        if (_watched == 0)
        {
            return null;
        }
        foreach (var queue in _queues)
        {
            for (var node = queue.First; node is not null;)
            {
                var next = node.Next;
                var item = node.Value;
                if ((item.Expiry != 0 && item.Expiry <= now) || item.GivenUp.IsCancellationRequested)
                {
                    (given ??= []).Add(item);
                    Remove(item);
                }
                node = next;
            }
        }
        return given;
    }

    private void Remove(Item item)
    {
        item.Node!.List!.Remove(item.Node);
        item.Node = null;
        _queued--;
        _queuedBytes -= item.Bytes;
        _watched -= item.Watched ? 1 : 0;
    }

    /// <summary>Answers requests taken out unrun: cancelled for a caller who gave up, else a timeout.</summary>
    private void Fail(List<Item>? given)
    {
        foreach (var item in given ?? [])
        {
            item.StopTimer();
            if (item.GivenUp.IsCancellationRequested)
            {
                item.Completion.TrySetCanceled(item.GivenUp);
                continue;
            }
            var waited = _time.GetElapsedTime(item.Enqueued);
            if (item.ExpiresByCall)
            {
                item.Completion.TrySetException(new TimeoutException(
                    $"{Name}: the request waited {waited.TotalMilliseconds:0.###} ms in the queue, past the call timeout ({(item.CallDeadline - item.Enqueued) / (double)_time.TimestampFrequency:0.#} s); it was not run"));
                continue;
            }
            item.Completion.TrySetException(MedServeException.TimedOut(
                $"{Name}: the request waited {waited.TotalMilliseconds:0.###} ms in the queue, past its timeout of {item.TimeoutMicroseconds} µs; it was not run"));
        }
    }

    /// <summary>Puts this batcher in the pool's ready queue, unless it is there already.</summary>
    private void Schedule()
    {
        if (Interlocked.Exchange(ref _scheduled, 1) == 0)
        {
            _pool.Schedule(this);
        }
    }

    /// <summary>
    /// On a pool thread: takes the next batch and runs it here. With more queued than this run takes, the batcher is
    /// ready again at once, so another free thread runs the next batch meanwhile. A batch worth waiting for (company
    /// expected within the queue delay) arms the timer instead and frees the thread.
    /// </summary>
    void IPoolWork.RunOnPoolThread()
    {
        // Cleared first: a request that arrives from here on makes the batcher ready again, so none is left unseen.
        Volatile.Write(ref _scheduled, 0);
        List<Item>? batch = null;
        List<Item>? expired;
        var again = false;
        lock (_gate)
        {
            var now = _time.GetTimestamp();
            expired = TakeGivenUp(now);
            if (_queued > 0 && _runningBatches < RunsAtOnce(_policy))
            {
                batch = TakeBatch(now, out var wait);
                if (batch is not null)
                {
                    _runningBatches++;
                    again = _queued > 0;
                }
                else if (wait is { } w)
                {
                    _companyTimer.Change(w, Timeout.InfiniteTimeSpan);
                }
            }
            SignalIfDrained();
        }
        Fail(expired);
        if (batch is null)
        {
            return;
        }
        if (again)
        {
            Schedule();
        }
        try
        {
            Execute(batch);
        }
        finally
        {
            BatchDone();
        }
    }

    /// <summary>A batch has been answered: one fewer running; with more queued, the batcher is ready again.</summary>
    private void BatchDone()
    {
        bool again;
        lock (_gate)
        {
            _runningBatches--;
            again = _queued > 0;
            SignalIfDrained();
        }
        if (again)
        {
            Schedule();
        }
    }

    /// <summary>
    /// Whether this model's runs are short enough to run on a caller's thread: under <see cref="InlineRunLimit"/> per
    /// request on average (a fresh replica's are not known yet, so its first runs go to the pool).
    /// </summary>
    private bool ShortRuns => _meanRunSeconds < InlineRunLimit.TotalSeconds;

    /// <summary>Runs one request that found nothing queued on the thread that brought it (see <see cref="ShortRuns"/>).</summary>
    private void RunInline(Item item)
    {
        try
        {
            Execute([item]);
        }
        finally
        {
            _pool.ExitInline();
            BatchDone();
        }
    }

    /// <summary>Under the lock: once stopping, nothing queued and nothing running, the session may be freed.</summary>
    private void SignalIfDrained()
    {
        if (_stopping && _queued == 0 && _runningBatches == 0)
        {
            _drained.TrySetResult();
        }
    }

    /// <summary>Under the lock: the next batch, or null and how long to wait for company.</summary>
    private List<Item>? TakeBatch(long now, out TimeSpan? wait)
    {
        wait = null;
        var policy = _policy;
        var maxRows = _model.Batchable && !_unsplittable ? policy.MaxBatchSize : 1;
        var first = _queues[(int)RequestPriority.Online].First?.Value ?? _queues[(int)RequestPriority.Job].First!.Value;
        var batch = new List<Item> { first };
        var rows = (long)first.Rows;
        var more = false; // same-shape requests left behind for lack of room
        if (first.Group.Length > 0)
        {
            foreach (var queue in _queues)
            {
                for (var node = queue.First; node is not null; node = node.Next)
                {
                    var item = node.Value;
                    if (item == first || item.Group != first.Group)
                    {
                        continue;
                    }
                    if (rows + item.Rows > maxRows)
                    {
                        more = true;
                        continue;
                    }
                    batch.Add(item);
                    rows += item.Rows;
                }
            }
        }
        var full = more || rows >= maxRows || policy.PreferredBatchSizes.Contains((int)rows)
            || (policy.PreferredBatchSizes.Length > 0 && rows >= policy.PreferredBatchSizes.Max() && rows == maxRows);
        if (!full && !_stopping && policy.MaxQueueDelayMicroseconds > 0 && maxRows > 1)
        {
            var delay = (long)(policy.MaxQueueDelayMicroseconds * (_time.TimestampFrequency / 1_000_000.0));
            var remaining = first.Enqueued + delay - now;
            var companyExpected = now - _lastCompanyArrival < 2 * delay && _companyGap < remaining;
            if (remaining > 0 && companyExpected)
            {
                wait = TimeSpan.FromTicks((long)Math.Ceiling(remaining * (TimeSpan.TicksPerSecond / (double)_time.TimestampFrequency)));
                return null;
            }
        }
        foreach (var item in batch)
        {
            Remove(item);
        }
        _running += batch.Count;
        return batch;
    }

    private void Execute(List<Item> batch)
    {
        var wall = Stopwatch.GetTimestamp();
        try
        {
            ExecuteCore(batch, _time.GetTimestamp());
        }
        finally
        {
            // Smoothed run time per request: what a request that runs alone on its caller's thread holds it for. Per
            // request, not per batch: a batch of eight taking longer must not stop lone requests from running inline
            // (the bench saw the CNN flip to pool hand-overs once batches formed, and run slower with batching on).
            var seconds = Stopwatch.GetElapsedTime(wall).TotalSeconds / batch.Count;
            _meanRunSeconds = _meanRunSeconds == double.MaxValue ? seconds : (0.9 * _meanRunSeconds) + (0.1 * seconds);
        }
    }

    private void ExecuteCore(List<Item> batch, long started)
    {
        foreach (var item in batch)
        {
            item.StopTimer();
            item.QueueMilliseconds = _time.GetElapsedTime(item.Enqueued, started).TotalMilliseconds;
            InferenceMetrics.RecordQueue(_model.Manifest.Name, _model.Manifest.Version, item.QueueMilliseconds / 1000.0);
            if (item.Trace is { } parent)
            {
                StartSpans(item, parent, batch.Count);
            }
        }
        try
        {
            Run(batch);
        }
        catch (Exception e)
        {
            var error = e switch
            {
                MedServeException m => m,
                OutOfMemoryException => MedServeException.Unavailable($"{Name} could not run the request just now (out of memory); the input is not at fault"),
                _ => new MedServeException(ErrorKind.Internal, $"{Name} failed to run ({e.GetType().Name})"),
            };
            foreach (var item in batch)
            {
                Answer(item, null, error);
            }
        }
    }

    /// <summary>
    /// Answers a running request once. It stops counting as running first, so a caller who sends its next request on
    /// the answer does not find itself in company (and never waits for a batch of one).
    /// </summary>
    private void Answer(Item item, InferenceResponse? response, Exception? error)
    {
        if (!item.TryAnswer())
        {
            return;
        }
        lock (_gate)
        {
            _running--;
        }
        if (item.Run is { } run)
        {
            EndRun(run, response, error);
        }
        if (response is not null)
        {
            item.Completion.TrySetResult(response);
        }
        else
        {
            item.Completion.TrySetException(error!);
        }
    }

    /// <summary>
    /// A sampled request's spans, under the span it arrived with: its queue wait (recorded now, from its arrival) and its
    /// run (ended when it is answered). Neither becomes the thread's current span.
    /// </summary>
    private void StartSpans(Item item, ActivityContext parent, int requests)
    {
        var previous = Activity.Current;
        var now = _time.GetUtcNow();
        var model = _model.Manifest;
        var priority = item.Request.Priority == RequestPriority.Job ? "job" : "online";
        var queue = MedServeTracing.Source.StartActivity(MedServeTracing.QueueSpan, ActivityKind.Internal, parent,
            startTime: now - TimeSpan.FromMilliseconds(item.QueueMilliseconds));
        if (queue is not null)
        {
            queue.SetTag(MedServeTracing.Model, model.Name);
            queue.SetTag(MedServeTracing.Version, model.Version);
            queue.SetTag(MedServeTracing.Replica, _replica);
            queue.SetTag(MedServeTracing.Priority, priority);
            queue.SetTag(MedServeTracing.QueueWaitMs, item.QueueMilliseconds);
            queue.SetEndTime(now.UtcDateTime);
            queue.Stop();
        }
        var run = MedServeTracing.Source.StartActivity(MedServeTracing.RunSpan, ActivityKind.Internal, parent, startTime: now);
        if (run is not null)
        {
            run.SetTag(MedServeTracing.Model, model.Name);
            run.SetTag(MedServeTracing.Version, model.Version);
            run.SetTag(MedServeTracing.Replica, _replica);
            run.SetTag(MedServeTracing.Priority, priority);
            run.SetTag(MedServeTracing.QueueWaitMs, item.QueueMilliseconds);
            run.SetTag(MedServeTracing.BatchRequests, requests);
            run.SetTag(MedServeTracing.RequestRows, item.Rows == int.MaxValue ? 1 : item.Rows);
            item.Run = run;
        }
        Activity.Current = previous;
    }

    private void EndRun(Activity run, InferenceResponse? response, Exception? error)
    {
        if (response is not null)
        {
            run.SetTag(MedServeTracing.BatchSize, response.BatchSize);
            run.SetTag(MedServeTracing.ComputeMs, response.ComputeMilliseconds);
        }
        else if (error is not null)
        {
            MedServeTracing.Fail(run, error);
        }
        run.SetEndTime(_time.GetUtcNow().UtcDateTime);
        run.Stop();
    }

    /// <summary>
    /// Runs a batch. When the model refuses it as input, splits it in halves so that only the requests that cause it
    /// fail; any other failure (the runtime's, not the input's) answers every request of the batch with it.
    /// </summary>
    private void Run(List<Item> batch)
    {
        if (batch.Count == 1)
        {
            RunAlone(batch[0]);
            return;
        }
        Tensor[] outputs;
        TimeSpan elapsed;
        var totalRows = batch.Sum(i => (long)i.Rows);
        var stacked = Stack(batch, totalRows);
        try
        {
            (outputs, elapsed) = _model.RunValidated(stacked, _model.OutputNames);
        }
        catch (MedServeException e) when (e.Kind == ErrorKind.InvalidInput)
        {
            var half = batch.Count / 2;
            Run(batch[..half]);
            Run(batch[half..]);
            return;
        }
        catch (MedServeException e)
        {
            // Out of memory, an execution provider error: no request is to blame, and running the halves would
            // only run the failing session again. Every request gets the retryable error.
            foreach (var item in batch)
            {
                Answer(item, null, e);
            }
            return;
        }
        finally
        {
            foreach (var t in stacked)
            {
                ArrayPool<byte>.Shared.Return(t.Data);
            }
        }
        if (outputs.Any(o => o.Shape.Length == 0 || o.Shape[0] != totalRows))
        {
            // The graph said the first dimension is dynamic but an output does not follow it: never batch again.
            _unsplittable = true;
            foreach (var item in batch)
            {
                RunAlone(item);
            }
            return;
        }
        long offset = 0;
        foreach (var item in batch)
        {
            var mine = new List<Tensor>(outputs.Length);
            foreach (var output in outputs)
            {
                if (item.Request.RequestedOutputs is { } wanted && !wanted.Contains(output.Name, StringComparer.Ordinal))
                {
                    continue;
                }
                var rowBytes = output.Data.Length / totalRows;
                var shape = (long[])output.Shape.Clone();
                shape[0] = item.Rows;
                mine.Add(new Tensor(output.Name, output.Datatype, shape, output.Data.AsSpan((int)(offset * rowBytes), (int)(item.Rows * rowBytes)).ToArray()));
            }
            if (item.Request.RequestedOutputs is { } order)
            {
                mine.Sort((a, b) => Array.IndexOf(order, a.Name).CompareTo(Array.IndexOf(order, b.Name)));
            }
            offset += item.Rows;
            Complete(item, [.. mine], elapsed, (int)totalRows);
        }
    }

    private void RunAlone(Item item)
    {
        try
        {
            var (outputs, elapsed) = _model.RunValidated(item.Request.Inputs, item.Request.RequestedOutputs ?? _model.OutputNames);
            Complete(item, outputs, elapsed, item.Rows == int.MaxValue ? 1 : item.Rows);
        }
        catch (MedServeException e)
        {
            Answer(item, null, e);
        }
    }

    private void Complete(Item item, Tensor[] outputs, TimeSpan elapsed, int batchRows) =>
        Answer(item, new InferenceResponse(_model.Manifest.Name, _model.Manifest.Version, outputs, item.Request.Id, elapsed.TotalMilliseconds)
        {
            QueueMilliseconds = item.QueueMilliseconds,
            BatchSize = batchRows,
            Replica = _replica,
        }, null);

    /// <summary>
    /// Concatenates each input along the first dimension (row-major buffers: the bytes simply follow) into pooled
    /// buffers: a batch of images is large-object-heap sized, and allocating one per batch costs full collections.
    /// The buffers may be longer than the data; the caller returns them to the pool after the run.
    /// </summary>
    private static Tensor[] Stack(List<Item> batch, long totalRows)
    {
        var template = batch[0].Request.Inputs;
        var stacked = new Tensor[template.Length];
        for (var i = 0; i < template.Length; i++)
        {
            var name = template[i].Name;
            var parts = batch.Select(item => Array.Find(item.Request.Inputs, t => t.Name == name)!).ToArray();
            var data = ArrayPool<byte>.Shared.Rent(parts.Sum(p => p.Data.Length));
            var at = 0;
            foreach (var part in parts)
            {
                part.Data.CopyTo(data, at);
                at += part.Data.Length;
            }
            var shape = (long[])template[i].Shape.Clone();
            shape[0] = totalRows;
            stacked[i] = new Tensor(name, template[i].Datatype, shape, data);
        }
        return stacked;
    }

    /// <summary>Stops taking requests, lets queued and running ones finish, then frees the session.</summary>
    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        lock (_gate)
        {
            _stopping = true;
            SignalIfDrained();
        }
        Schedule();
        var drained = await _drained.Task.WaitAsync(DrainTimeout, _time).ContinueWith(t => t.IsCompletedSuccessfully, TaskScheduler.Default);
        if (!drained)
        {
            // Too much queued to finish in time: what has not started is answered "not ready" (retryable elsewhere).
            var left = new List<Item>();
            lock (_gate)
            {
                foreach (var queue in _queues)
                {
                    left.AddRange(queue);
                }
                left.ForEach(Remove);
                SignalIfDrained();
            }
            foreach (var item in left)
            {
                item.StopTimer();
                item.Completion.TrySetException(MedServeException.NotReady($"{Name} stopped on this replica before the request ran"));
            }
            // The session is freed once the last running batch is done, never under it.
            await _drained.Task;
        }
        await _companyTimer.DisposeAsync();
        _model.Dispose();
        if (_ownsPool)
        {
            _pool.Dispose();
        }
    }

    private sealed class Item(InferenceRequest request, string group, int rows, long bytes, long enqueued, long timeoutMicroseconds, long deadline, CancellationToken givenUp)
    {
        private static readonly CancellationTokenSource Stopped = new();
        private CancellationTokenSource? _timer;
        private int _answered;

        public InferenceRequest Request { get; } = request;
        public string Group { get; } = group;
        public int Rows { get; } = rows;
        /// <summary>Bytes of the request's input tensors, counted against <c>max_queue_bytes</c> while it waits.</summary>
        public long Bytes { get; } = bytes;
        /// <summary>Timestamp (of the batcher's <see cref="TimeProvider"/>) of its arrival.</summary>
        public long Enqueued { get; } = enqueued;
        public long TimeoutMicroseconds { get; } = timeoutMicroseconds;
        /// <summary>Timestamp after which the request must not run; 0 for none.</summary>
        public long Deadline { get; } = deadline;
        /// <summary>Cancelled when the caller has given up.</summary>
        public CancellationToken GivenUp { get; } = givenUp;
        /// <summary>Timestamp after which the call it came through (<see cref="IBatcher.EnqueueAsync"/>) has timed out; 0 for none.</summary>
        public long CallDeadline { get; init; }
        /// <summary>The earlier of <see cref="Deadline"/> and <see cref="CallDeadline"/>: past it the request is not run; 0 for none.</summary>
        public long Expiry => Deadline == 0 ? CallDeadline : CallDeadline == 0 ? Deadline : Math.Min(Deadline, CallDeadline);
        /// <summary>Whether its expiry is the call's timeout (a <see cref="TimeoutException"/>) rather than its own (a 504).</summary>
        public bool ExpiresByCall => CallDeadline != 0 && CallDeadline == Expiry;
        /// <summary>Has an expiry or a caller that may give up: the dispatch looks for it.</summary>
        public bool Watched => Expiry != 0 || GivenUp.CanBeCanceled;
        public TaskCompletionSource<InferenceResponse> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
        public LinkedListNode<Item>? Node { get; set; }
        public double QueueMilliseconds { get; set; }
        /// <summary>The sampled span the request arrived under (its replica grain call), or null: no spans for it.</summary>
        public ActivityContext? Trace { get; init; }
        /// <summary>Its run span while it runs (sampled requests only).</summary>
        public Activity? Run { get; set; }

        public void StartTimer(TimeSpan after, TimeProvider time, Action<Item> expire)
        {
            // Registered before it is published: once StopTimer can see it, a pool thread taking the request to run may
            // dispose it at any moment, and a disposed source's Token throws (the load test saw that as a 500 once).
            var timer = new CancellationTokenSource(after < TimeSpan.FromMilliseconds(1) ? TimeSpan.FromMilliseconds(1) : after, time);
            timer.Token.UnsafeRegister(static state =>
            {
                var (callback, item) = ((Action<Item>, Item))state!;
                callback(item);
            }, (expire, this));
            if (Interlocked.CompareExchange(ref _timer, timer, null) is not null)
            {
                timer.Dispose(); // stopped already
            }
        }

        /// <summary>Stops the timer (or keeps one from starting); safe from any thread, any number of times.</summary>
        public void StopTimer()
        {
            var timer = Interlocked.Exchange(ref _timer, Stopped);
            if (timer is not null && timer != Stopped)
            {
                timer.Dispose();
            }
        }

        /// <summary>Answers the request once; the first answer wins. Returns whether this call answered it.</summary>
        public bool TryAnswer() => Interlocked.Exchange(ref _answered, 1) == 0;
    }
}
