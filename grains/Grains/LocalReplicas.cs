using System.Collections.Concurrent;
using MedServe.Inference.Runtime;
using MedServe.Routing;
using Microsoft.Extensions.Options;
using Orleans.Configuration;

namespace MedServe.Grains;

/// <summary>
/// This silo's loaded replicas by grain key (a <see cref="ReplicaGrain"/> adds its queue once its session is loaded and
/// takes it away before it stops), so front ends on the silo reach a local replica without an Orleans message.
/// The direct call keeps the grain call's semantics: a stopping replica answers "not ready" (the router then takes a
/// fresh route), and a request still queued when the grain call would have timed out is answered with a
/// <see cref="TimeoutException"/> and never run.
/// </summary>
public sealed class LocalReplicas(IOptions<SiloMessagingOptions> messaging) : ILocalReplicas
{
    private readonly ConcurrentDictionary<string, IBatcher> _replicas = new(StringComparer.Ordinal);
    private readonly TimeSpan _callTimeout = messaging.Value.ResponseTimeout;

    internal void Add(string key, IBatcher batcher) => _replicas[key] = batcher;

    internal void Remove(string key, IBatcher batcher) => _replicas.TryRemove(new KeyValuePair<string, IBatcher>(key, batcher));

    public Task<InferenceResponse>? TryInfer(string replicaKey, InferenceRequest request, CancellationToken cancellationToken) =>
        _replicas.TryGetValue(replicaKey, out var batcher) ? batcher.EnqueueAsync(request, cancellationToken, _callTimeout) : null;
}
