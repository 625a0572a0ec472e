namespace MedServe.Inference.Runtime;

/// <summary>
/// The scheduler seam between front ends and ONNX Runtime (Triton's small scheduler interface):
/// enqueue a request, know what is in flight, stop. The dynamic batcher implements it too.
/// </summary>
public interface IBatcher : IAsyncDisposable
{
    /// <summary>Queues a request; completes with its response or its error.</summary>
    Task<InferenceResponse> EnqueueAsync(InferenceRequest request);

    /// <summary>Requests accepted and not yet answered.</summary>
    int InFlight { get; }
}

/// <summary>
/// No batching: each request runs at once, off the caller's thread (a grain turn never waits on ONNX Runtime).
/// The session is reference-counted: the batcher holds one reference and every running request one more,
/// so stopping never frees a session under a running request, and never throws or waits forever.
/// </summary>
public sealed class ImmediateBatcher(OnnxModel model) : IBatcher
{
    private int _references = 1; // the batcher's own
    private int _stopped;

    public int InFlight => Math.Max(0, Volatile.Read(ref _references) - (Volatile.Read(ref _stopped) == 0 ? 1 : 0));

    public Task<InferenceResponse> EnqueueAsync(InferenceRequest request)
    {
        if (!TryAcquire())
        {
            return Task.FromException<InferenceResponse>(MedServeException.NotReady($"{model.Manifest.Name}:{model.Manifest.Version} is unloading"));
        }
        return Task.Run(() =>
        {
            try
            {
                return model.Run(request);
            }
            finally
            {
                Release();
            }
        });
    }

    private bool TryAcquire()
    {
        while (true)
        {
            var current = Volatile.Read(ref _references);
            if (current == 0 || Volatile.Read(ref _stopped) != 0)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref _references, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    private void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            model.Dispose();
        }
    }

    /// <summary>Stops taking requests; the session is freed when the last running one finishes.</summary>
    public ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _stopped, 1) == 0)
        {
            Release();
        }
        return ValueTask.CompletedTask;
    }
}
