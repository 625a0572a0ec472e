using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.CompilerServices;
using MedServe.Telemetry;

namespace MedServe.Routing;

/// <summary>
/// Used by every front end (HTTP on a silo, the .NET client, job workers): sends a request straight to a ready replica:
/// one grain hop on the online path, none when the replica chosen is on this silo (<see cref="ILocalReplicas"/>: its
/// queue is called directly). Routes (which version is the default, which replicas serve it) are cached per process
/// for a second; when one expires, one caller looks it up again while the others keep using the last one. A replica
/// that answers "not ready" drops the route and the request is tried once more on a fresh one.
/// </summary>
public sealed class ModelRouter(IGrainFactory grains, ILocalReplicas? local = null)
{
    private static readonly long RouteTtl = Stopwatch.Frequency; // one second

    private readonly ConcurrentDictionary<(string Model, string? Version), CachedRoute> _routes = new();
    private readonly ConcurrentDictionary<string, StrongBox<int>> _outstanding = new(StringComparer.Ordinal);

    /// <summary>
    /// Grain references of the replicas called from here, made once per replica instead of once per request (a
    /// reference parses its key and finds its grain type). Replica keys change only on deploys; the cache is dropped
    /// whole if it ever holds more than <see cref="MaxReplicaRefs"/>.
    /// </summary>
    private readonly ConcurrentDictionary<string, IReplicaGrain> _replicaRefs = new(StringComparer.Ordinal);

    private const int MaxReplicaRefs = 4096;

    /// <summary>
    /// Runs a request on a ready replica. <paramref name="cancellationToken"/> is the caller giving up (an HTTP client
    /// that went away): the replica then skips the request if it has not run yet.
    /// </summary>
    public async Task<InferenceResponse> InferAsync(string model, string? version, InferenceRequest request, CancellationToken cancellationToken = default)
    {
        // The route span: a child of the caller's span (HTTP, a job worker's grain call), or a root sampled by ratio for a
        // grain-client caller with no trace. None when the caller's trace is sampled out: nothing under it is recorded.
        using var span = Activity.Current is { Recorded: false } ? null : MedServeTracing.Source.StartActivity(MedServeTracing.RouteSpan);
        try
        {
            return await RouteAsync(model, version, request, span, cancellationToken);
        }
        catch (Exception e)
        {
            MedServeTracing.Fail(span, e);
            throw;
        }
    }

    private async Task<InferenceResponse> RouteAsync(string model, string? version, InferenceRequest request, Activity? span, CancellationToken cancellationToken)
    {
        string? failed = null;
        for (var attempt = 0; ; attempt++)
        {
            var route = await ResolveAsync(model, version);
            if (route.State != DeploymentState.Ready || route.ReplicaKeys.Length == 0)
            {
                throw MedServeException.NotReady($"{route.Model}:{route.Version} is {route.State}{(route.Reason is null ? "" : ": " + route.Reason)}");
            }
            var key = PickLeastLoaded(route.ReplicaKeys, failed);
            if (span is { IsAllDataRequested: true })
            {
                // Names only once resolved: a model name that resolved is the operator's, never a caller's free text.
                span.SetTag(MedServeTracing.Model, route.Model);
                span.SetTag(MedServeTracing.Version, route.Version);
                span.SetTag(MedServeTracing.Replica, key);
                span.SetTag(MedServeTracing.Attempts, attempt + 1);
            }
            var outstanding = _outstanding.GetOrAdd(key, static _ => new StrongBox<int>());
            Interlocked.Increment(ref outstanding.Value);
            try
            {
                return await (local?.TryInfer(key, request, cancellationToken)
                    ?? Replica(key).InferAsync(request, cancellationToken));
            }
            catch (MedServeException e) when (e.Kind == ErrorKind.NotReady && attempt == 0)
            {
                Invalidate(model);
                failed = key;
            }
            catch (SiloUnavailableException) when (attempt == 0 && route.ReplicaKeys.Length > 1)
            {
                // The replica's silo is gone: try a replica elsewhere.
                failed = key;
            }
            finally
            {
                Interlocked.Decrement(ref outstanding.Value);
            }
        }
    }

    /// <summary>
    /// Least-loaded by "power of two choices" (as Envoy and Finagle balance): of two replicas drawn at random, the one
    /// with fewer requests outstanding from this front end. Close to the best choice, with no shared state and
    /// no herd on one replica.
    /// </summary>
    private string PickLeastLoaded(string[] keys, string? avoid)
    {
        if (keys.Length == 1)
        {
            return keys[0];
        }
        var a = keys[Random.Shared.Next(keys.Length)];
        var b = keys[Random.Shared.Next(keys.Length - 1)];
        if (b == a)
        {
            b = keys[^1];
        }
        if (a == avoid)
        {
            return b;
        }
        if (b == avoid)
        {
            return a;
        }
        return Load(a) <= Load(b) ? a : b;
    }

    private IReplicaGrain Replica(string key)
    {
        if (_replicaRefs.TryGetValue(key, out var replica))
        {
            return replica;
        }
        if (_replicaRefs.Count >= MaxReplicaRefs)
        {
            _replicaRefs.Clear();
        }
        return _replicaRefs.GetOrAdd(key, static (k, g) => g.GetGrain<IReplicaGrain>(k), grains);
    }

    private int Load(string key) => _outstanding.TryGetValue(key, out var box) ? Volatile.Read(ref box.Value) : 0;

    /// <summary>Finds the deployment a call goes to; unknown models and versions are NotFound.</summary>
    public async Task<InferenceRoute> ResolveAsync(string model, string? version)
    {
        if (_routes.TryGetValue((model, version), out var cached))
        {
            if (cached.Expires > Stopwatch.GetTimestamp() || Interlocked.Exchange(ref cached.Refreshing, 1) == 1)
            {
                // Fresh, or stale with another caller already looking it up: no look-up per waiting request.
                return cached.Route;
            }
            try
            {
                return await LookUpAsync(model, version);
            }
            catch
            {
                _routes.TryRemove(new KeyValuePair<(string, string?), CachedRoute>((model, version), cached));
                throw;
            }
            finally
            {
                Volatile.Write(ref cached.Refreshing, 0);
            }
        }
        return await LookUpAsync(model, version);
    }

    private async Task<InferenceRoute> LookUpAsync(string model, string? version)
    {
        var key = (model, version);
        if (!ModelNames.IsValidName(model))
        {
            throw MedServeException.NotFound($"unknown model '{model}'");
        }
        var modelGrain = grains.GetGrain<IModelGrain>(model);
        if (version is null)
        {
            version = await modelGrain.GetDefaultVersionAsync();
            if (version is null)
            {
                throw await modelGrain.GetAsync() is null
                    ? MedServeException.NotFound($"unknown model '{model}'")
                    : MedServeException.NotFound($"model '{model}' has no deployed version");
            }
        }
        else if (!ModelNames.IsValidVersion(version) || await modelGrain.GetVersionAsync(version) is null)
        {
            throw await modelGrain.GetAsync() is null
                ? MedServeException.NotFound($"unknown model '{model}'")
                : MedServeException.NotFound($"model '{model}' has no version '{version}'");
        }
        var route = await grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(model, version)).GetRouteAsync();
        if (route.State == DeploymentState.Unloaded)
        {
            throw MedServeException.NotFound($"{model}:{version} is not deployed");
        }
        if (route.State == DeploymentState.Ready)
        {
            _routes[key] = new CachedRoute(route, Stopwatch.GetTimestamp() + RouteTtl);
        }
        else
        {
            _routes.TryRemove(key, out _);
        }
        return route;
    }

    private sealed class CachedRoute(InferenceRoute route, long expires)
    {
        public InferenceRoute Route { get; } = route;
        public long Expires { get; } = expires;
        /// <summary>1 while one caller looks the route up again.</summary>
        public int Refreshing;
    }

    /// <summary>
    /// Whether a call for <paramref name="model"/> (and <paramref name="version"/>, null for the default) has been routed
    /// from here: a name and version this router has resolved, so a metric may be labelled with them. A request that
    /// fails before routing (a body that does not parse) names whatever its caller wrote.
    /// </summary>
    public bool HasRouted(string model, string? version) => _routes.ContainsKey((model, version));

    /// <summary>Forgets the cached routes of a model (after a deploy, undeploy or a replica that went away).</summary>
    public void Invalidate(string model)
    {
        foreach (var key in _routes.Keys)
        {
            if (key.Model == model)
            {
                _routes.TryRemove(key, out _);
            }
        }
    }
}
