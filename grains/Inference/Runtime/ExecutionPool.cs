using System.Collections.Concurrent;

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
/// number of replicas makes the silo run more ONNX Runtime work at once than its threads, plus as many short runs on
/// requests' own threads (<see cref="TryEnterInline"/>, bounded apart): at most twice its cores.
/// <para>
/// A replica with work schedules itself (once: it is in the ready queue at most once at a time); an idle thread takes
/// it at once, without a dispatch loop between: the request's thread signals the runner's. Replicas take turns in the
/// order they became ready; one with more queued puts itself back behind the others after each batch.
/// </para>
/// </summary>
public sealed class ExecutionPool : IDisposable
{
    private readonly ConcurrentQueue<IPoolWork> _ready = new();
    private readonly SemaphoreSlim _signal = new(0);
    private readonly Thread[] _threads;
    private volatile bool _disposed;
    private int _inline;

    public ExecutionPool(int threads, string name = "medserve-onnx")
    {
        _threads = new Thread[Math.Max(1, threads)];
        for (var i = 0; i < _threads.Length; i++)
        {
            // Background: a host that stops without disposing the pool is not kept alive by it.
            _threads[i] = new Thread(Work) { IsBackground = true, Name = $"{name}-{i}" };
            _threads[i].UnsafeStart();
        }
    }

    /// <summary>Threads in the pool: the most runs the silo makes at once.</summary>
    public int Size => _threads.Length;

    /// <summary>For a silo: one thread per core over the intra-op threads each run uses.</summary>
    public static ExecutionPool ForCores(int intraOpThreads) =>
        new(Math.Max(1, Environment.ProcessorCount / Math.Max(1, intraOpThreads)));

    /// <summary>
    /// A short run (well under a millisecond) may go on the thread of the request that finds its replica idle, which
    /// saves two thread hand-overs. Such runs are bounded too: at most <see cref="Size"/> at once.
    /// </summary>
    public bool TryEnterInline()
    {
        var n = Volatile.Read(ref _inline);
        while (n < _threads.Length)
        {
            var seen = Interlocked.CompareExchange(ref _inline, n + 1, n);
            if (seen == n)
            {
                return true;
            }
            n = seen;
        }
        return false;
    }

    public void ExitInline() => Interlocked.Decrement(ref _inline);

    /// <summary>Queues <paramref name="work"/> for the next free thread.</summary>
    public void Schedule(IPoolWork work)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        _ready.Enqueue(work);
        _signal.Release();
    }

    private void Work()
    {
        while (true)
        {
            _signal.Wait();
            if (_disposed)
            {
                return;
            }
            if (_ready.TryDequeue(out var work))
            {
                try
                {
                    work.RunOnPoolThread();
                }
                catch (Exception e) when (e is not OutOfMemoryException)
                {
                    // A work item answers its own failures; one that escapes must not take a runner thread with it.
                    System.Diagnostics.Trace.TraceError($"MedServe execution pool: {e.GetType().Name} escaped a work item");
                }
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
        _signal.Release(_threads.Length);
    }
}
