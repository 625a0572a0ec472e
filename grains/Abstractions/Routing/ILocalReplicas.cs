namespace MedServe.Routing;

/// <summary>
/// The replicas activated on this process's silo, for <see cref="ModelRouter"/>: a request whose chosen replica is
/// here is handed to that replica's queue directly, without an Orleans message (no serialisation, no scheduler turn).
/// Only a silo has one; a client's router always makes the grain call.
/// </summary>
public interface ILocalReplicas
{
    /// <summary>
    /// Queues <paramref name="request"/> on the replica <paramref name="replicaKey"/> if it is active and loaded on this
    /// silo, with the same limits, draining, timeout and errors as its grain call; null when it is not here (then the
    /// caller makes the grain call).
    /// </summary>
    Task<InferenceResponse>? TryInfer(string replicaKey, InferenceRequest request, CancellationToken cancellationToken);
}
