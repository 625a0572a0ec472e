namespace MedServe.Inference.Runtime;

/// <summary>
/// The scheduler seam between front ends and ONNX Runtime (Triton's small scheduler interface):
/// enqueue a request, know what is waiting and running, change the policy, stop.
/// </summary>
public interface IBatcher : IAsyncDisposable
{
    /// <summary>
    /// Queues a request; completes with its response or its error. A request whose <paramref name="cancellationToken"/>
    /// is cancelled before it runs (its caller gave up) is never run.
    /// </summary>
    /// <param name="callTimeout">
    /// The timeout of the call this request came through, if it came without one of its own (a front end that reached a
    /// local replica directly instead of through a grain call): still queued when it passes, the request is answered
    /// with a <see cref="TimeoutException"/>, as the grain call would have been, and never run. Zero: none.
    /// </param>
    Task<InferenceResponse> EnqueueAsync(InferenceRequest request, CancellationToken cancellationToken = default, TimeSpan callTimeout = default);

    /// <summary>Requests accepted and not yet answered (queued and running).</summary>
    int InFlight { get; }

    /// <summary>Takes a new policy for the requests that follow; queued requests are kept.</summary>
    void UpdatePolicy(BatchingPolicy policy);
}
