using System.Collections.Concurrent;
using System.Diagnostics;

namespace MedServe.Inference.Runtime;

/// <summary>Work a pool thread runs: one step of a replica's queue (take a batch, run it, answer it).</summary>
public interface IPoolWork
{
    void RunOnPoolThread();
}

/// <summary>
/// The silo's ONNX Runtime threads: a fixed set of dedicated threads, sized to the cores (over the intra-op threads
/// each run uses), shared by every replica on the silo. Inference never blocks .NET thread-pool threads, so Orleans'
/// scheduler, Kestrel and the membership probes keep threads of their own however busy the models are, and no
/// number of replicas makes the silo run more ONNX Runtime work at once than it has cores for.
/// <para>
/// A replica with work schedules itself (once: it is in the ready queue at most once at a time); an idle thread takes
/// it at once, without a dispatch loop between: the request's thread signals the runner's. Replicas take turns in the
/// order they became ready; one with more queued puts itself back behind the others after each batch.
/// </para>
/// <para>
/// Runs at once, silo-wide, are bounded by <see cref="Limit"/>: runs on pool threads and short runs on a request's own
/// thread (<see cref="TryEnterInline"/>) alike. A silo whose cores are busy does not have a core for every thread: the
/// front ends (HTTP, Orleans, JSON) need their share. When the silo is busy, the limit follows the share of its CPU
/// time that runs take (<see cref="LimitFor"/>, re-read every <see cref="AdjustEvery"/>): a run that would only take
/// a core from the front end waits for the one in progress instead, and the requests that queue meanwhile leave as
/// one batch, which ONNX Runtime runs for less per row. With cores to spare, the limit is the pool's size.
/// </para>
/// </summary>
public sealed class ExecutionPool : IDisposable
{
    /// <summary>How often an adaptive pool re-reads the silo's CPU time and sets <see cref="Limit"/>.</summary>
    public static readonly TimeSpan AdjustEvery = TimeSpan.FromMilliseconds(250);

    /// <summary>Below this use of its cores the silo has cores to spare and runs are not held back.</summary>
    public const double BusyUtilization = 0.5;

    private readonly ConcurrentQueue<IPoolWork> _ready = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly object _slotGate = new(); // Monitor: pool threads wait here for a run to end
    private readonly Thread[] _threads;
    private readonly ITimer? _adjuster;
    private readonly Func<TimeSpan>? _cpuTime;
    private readonly TimeProvider _time;
    private readonly int _cores;
    private volatile bool _disposed;
    private volatile int _limit;
    private int _active; // runs in progress: pool threads and inline runs
    private int _slotWaiters; // pool threads waiting for a run to end
    private long _runTicks; // Stopwatch ticks of runs, summed
    private (TimeSpan Cpu, long Wall, long Run) _last;

    /// <summary>A pool of <paramref name="threads"/> threads, all of which may run at once.</summary>
    public ExecutionPool(int threads, string name = "medserve-onnx")
        : this(threads, cpuTime: null, cores: 0, time: null, name)
    {
    }

    /// <summary>
    /// A pool whose <see cref="Limit"/> follows the silo's load: <paramref name="cpuTime"/> is the process's CPU time so
    /// far (<see cref="Environment.CpuUsage"/> in a silo) on <paramref name="cores"/> cores, read every
    /// <see cref="AdjustEvery"/> on <paramref name="time"/>.
    /// </summary>
    public ExecutionPool(int threads, Func<TimeSpan>? cpuTime, int cores, TimeProvider? time, string name = "medserve-onnx")
    {
        _cores = Math.Max(1, cores);
        _threads = new Thread[Math.Max(1, threads)];
        _limit = _threads.Length;
        _time = time ?? TimeProvider.System;
        for (var i = 0; i < _threads.Length; i++)
        {
            // Background: a host that stops without disposing the pool is not kept alive by it.
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"{name}-{i}" };
            _threads[i].UnsafeStart();
        }
        if (cpuTime is not null)
        {
            _cpuTime = cpuTime;
            _last = (cpuTime(), _time.GetTimestamp(), 0);
            using (ExecutionContext.SuppressFlow())
            {
                _adjuster = _time.CreateTimer(static s => ((ExecutionPool)s!).Adjust(), this, AdjustEvery, AdjustEvery);
            }
        }
    }

    /// <summary>Threads in the pool: the most runs the silo makes at once.</summary>
    public int Size => _threads.Length;

    /// <summary>Runs allowed at once now (1 to <see cref="Size"/>).</summary>
    public int Limit => _limit;

    /// <summary>Pool threads with work in hand that wait for a run to end (the limit holds them).</summary>
    public int Waiting => Volatile.Read(ref _slotWaiters);

    /// <summary>For a silo: one thread per core over the intra-op threads each run uses; the limit follows the load.</summary>
    public static ExecutionPool ForCores(int intraOpThreads) =>
        new(Math.Max(1, Environment.ProcessorCount / Math.Max(1, intraOpThreads)), static () => Environment.CpuUsage.TotalTime, Environment.ProcessorCount, TimeProvider.System);

    /// <summary>
    /// Runs to allow at once, from one interval's figures: all of <paramref name="size"/> while the process used less
    /// than <see cref="BusyUtilization"/> of its <paramref name="cores"/>; otherwise the runs' share of the process's
    /// CPU time, in threads (rounded, at least 1).
    /// </summary>
    public static int LimitFor(int size, int cores, double wallSeconds, double cpuSeconds, double runSeconds)
    {
        if (wallSeconds <= 0 || cpuSeconds <= 0 || cpuSeconds < BusyUtilization * cores * wallSeconds)
        {
            return size;
        }
        var share = Math.Min(1, runSeconds / cpuSeconds);
        return Math.Clamp((int)Math.Round(size * share, MidpointRounding.AwayFromZero), 1, size);
    }

    /// <summary>Adds a run's wall time (Stopwatch ticks) to what <see cref="Limit"/> is computed from.</summary>
    public void AddRunTime(long stopwatchTicks) => Interlocked.Add(ref _runTicks, stopwatchTicks);

    private void Adjust()
    {
        if (_disposed || _cpuTime is null)
        {
            return;
        }
        var now = (Cpu: _cpuTime(), Wall: _time.GetTimestamp(), Run: Interlocked.Read(ref _runTicks));
        var wall = (now.Wall - _last.Wall) / (double)_time.TimestampFrequency;
        var cpu = (now.Cpu - _last.Cpu).TotalSeconds;
        var run = (now.Run - _last.Run) / (double)Stopwatch.Frequency;
        _last = now;
        SetLimit(LimitFor(Size, _cores, wall, cpu, run));
    }

    /// <summary>Sets how many runs may go at once (clamped to 1..<see cref="Size"/>); threads waiting for one go on.</summary>
    public void SetLimit(int limit)
    {
        limit = Math.Clamp(limit, 1, Size);
        if (limit == _limit)
        {
            return;
        }
        _limit = limit;
        lock (_slotGate)
        {
            Monitor.PulseAll(_slotGate);
        }
    }

    /// <summary>
    /// A short run (well under a millisecond) may go on the thread of the request that finds its replica idle, which
    /// saves two thread hand-overs, when a run may start now (<see cref="Limit"/>). <see cref="ExitInline"/> ends it.
    /// </summary>
    public bool TryEnterInline()
    {
        var n = Volatile.Read(ref _active);
        while (n < _limit)
        {
            var seen = Interlocked.CompareExchange(ref _active, n + 1, n);
            if (seen == n)
            {
                return true;
            }
            n = seen;
        }
        return false;
    }

    public void ExitInline() => ExitRun();

    /// <summary>Queues <paramref name="work"/> for the next free thread.</summary>
    public void Schedule(IPoolWork work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _ready.Enqueue(work);
        _signal.Release();
    }

    /// <summary>On a pool thread: waits until a run may start (under <see cref="Limit"/>) and counts it; false once disposed.</summary>
    private bool EnterRun()
    {
        while (!TryEnterInline())
        {
            if (_disposed)
            {
                return false;
            }
            lock (_slotGate)
            {
                // Counted before the check (a full fence): a run that ends after the check sees the waiter and pulses.
                Interlocked.Increment(ref _slotWaiters);
                if (Volatile.Read(ref _active) >= _limit && !_disposed)
                {
                    Monitor.Wait(_slotGate);
                }
                Interlocked.Decrement(ref _slotWaiters);
            }
        }
        return true;
    }

    private void ExitRun()
    {
        Interlocked.Decrement(ref _active);
        if (Volatile.Read(ref _slotWaiters) > 0)
        {
            lock (_slotGate)
            {
                Monitor.Pulse(_slotGate);
            }
        }
    }

    private void Work()
    {
        while (true)
        {
            _signal.Wait();
            if (_disposed || !EnterRun())
            {
                return;
            }
            try
            {
                if (_ready.TryDequeue(out var work))
                {
                    work.RunOnPoolThread();
                }
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // A work item answers its own failures; one that escapes must not take a runner thread with it.
                System.Diagnostics.Trace.TraceError($"MedServe execution pool: {e.GetType().Name} escaped a work item");
            }
            finally
            {
                ExitRun();
            }
        }
    }

    /// <summary>Stops the threads once they finish what they are running; work still queued is not run.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        _adjuster?.Dispose();
        _signal.Release(_threads.Length);
        lock (_slotGate)
        {
            Monitor.PulseAll(_slotGate);
        }
    }
}
