namespace MedServe.Inference.Runtime;

/// <summary>
/// The scheduler seam between front ends and ONNX Runtime (Triton's small scheduler interface):
/// enqueue a request, know what is in flight, stop. The dynamic batcher implements it too.
/// </summary>
public interface IBatcher : IAsyncDisposable
{
    /// <summary>Queues a request; completes with its response or its error.</summary>
    Task<InferenceResponse> EnqueueAsync(InferenceRequest request, CancellationToken cancellationToken = default);

    /// <summary>Requests accepted and not yet answered.</summary>
    int InFlight { get; }
}

/// <summary>
/// No batching: each request runs at once, off the caller's thread (a grain turn never waits on ONNX Runtime).
/// Stopping waits for the requests in flight, so an unload never frees a session under a running request.
/// </summary>
public sealed class ImmediateBatcher(OnnxModel model) : IBatcher
{
    private int _inFlight;
    private volatile bool _stopped;
    private readonly TaskCompletionSource _drained = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public int InFlight => Volatile.Read(ref _inFlight);

    public Task<InferenceResponse> EnqueueAsync(InferenceRequest request, CancellationToken cancellationToken = default)
    {
        Interlocked.Increment(ref _inFlight);
        if (_stopped)
        {
            Leave();
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
                Leave();
            }
        }, cancellationToken);
    }

    private void Leave()
    {
        if (Interlocked.Decrement(ref _inFlight) == 0 && _stopped)
        {
            _drained.TrySetResult();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _stopped = true;
        if (Volatile.Read(ref _inFlight) > 0)
        {
            await _drained.Task.WaitAsync(TimeSpan.FromSeconds(30));
        }
        model.Dispose();
    }
}
