using Orleans.Concurrency;

namespace MedServe;

/// <summary>A model by name: its immutable versions and which one is the default. Key: model name.</summary>
public interface IModelGrain : IGrainWithStringKey
{
    /// <summary>Registers a new version; a version that exists already is a conflict.</summary>
    Task<ModelVersionInfo> RegisterVersionAsync(ModelManifest manifest, string sha256, long sizeBytes);

    /// <summary>The model and its versions, or null when nothing is registered under this name.</summary>
    Task<ModelInfo?> GetAsync();

    /// <summary>One version, or null.</summary>
    Task<ModelVersionInfo?> GetVersionAsync(string version);

    /// <summary>Deletes a version; refused while it is deployed.</summary>
    Task DeleteVersionAsync(string version);

    /// <summary>Marks a version deployed or not (called by its deployment).</summary>
    Task SetDeployedAsync(string version, bool deployed);

    /// <summary>Sets the version that calls without a version go to; null returns to "highest deployed".</summary>
    Task SetDefaultVersionAsync(string? version);

    /// <summary>The version a call without a version goes to, or null when none is deployed.</summary>
    Task<string?> GetDefaultVersionAsync();
}

/// <summary>The cluster's index of models and deployments (singleton, key 0).</summary>
public interface ICatalogGrain : IGrainWithIntegerKey
{
    /// <summary>Model names, sorted.</summary>
    Task<string[]> ListModelsAsync();

    Task AddModelAsync(string name);

    Task RemoveModelAsync(string name);

    /// <summary>Deployment keys (<c>name/version</c>) that should be running.</summary>
    Task<string[]> ListDeploymentsAsync();

    Task SetDeploymentAsync(string key, bool active);
}

/// <summary>One deployed model version. Key: <c>name/version</c>.</summary>
public interface IDeploymentGrain : IGrainWithStringKey
{
    /// <summary>Starts (or re-specs) the deployment; returns at once with state Loading, Ready follows.</summary>
    Task<DeploymentInfo> DeployAsync(DeploymentSpec spec);

    /// <summary>Stops serving and frees every replica's session.</summary>
    Task<DeploymentInfo> UndeployAsync();

    Task<DeploymentInfo> GetAsync();

    /// <summary>Where requests go: state and ready replicas. Interleaves: the online path never waits behind a deploy stuck on storage.</summary>
    [AlwaysInterleave]
    Task<InferenceRoute> GetRouteAsync();

    /// <summary>Waits until the deployment is in <paramref name="state"/> (or the timeout passes) and returns it as it is.</summary>
    [AlwaysInterleave]
    [ResponseTimeout("00:05:00")]
    Task<DeploymentInfo> WaitForStateAsync(DeploymentState state, TimeSpan timeout);

    /// <summary>Tries again to place a Pending deployment (called when silos join); no-op otherwise.</summary>
    Task RetryIfPendingAsync();

    /// <summary>
    /// Checks where a Ready deployment's replicas are after a silo left: replicas come back on compatible silos; when
    /// no compatible silo is left the deployment turns Pending (and Ready again when one joins). No-op otherwise.
    /// </summary>
    [ResponseTimeout("00:01:00")]
    Task CheckReplicasAsync();

    /// <summary>Waits until the deployment leaves Loading/Validating (or the timeout passes) and returns its state.</summary>
    [AlwaysInterleave]
    [ResponseTimeout("00:05:00")]
    Task<DeploymentInfo> WaitSettledAsync(TimeSpan timeout);
}

/// <summary>One ONNX Runtime session on one silo. Key: <c>name/version/index</c>.</summary>
public interface IReplicaGrain : IGrainWithStringKey
{
    /// <summary>Loads the artifact (verified by SHA-256) into a session behind a batcher with this policy; idempotent.</summary>
    Task<ReplicaInfo> LoadAsync(ModelManifest manifest, string sha256, BatchingPolicy batching);

    /// <summary>Changes the batching policy of the loaded session, without a reload and without dropping requests.</summary>
    Task SetBatchingAsync(BatchingPolicy batching);

    /// <summary>Frees the session and forgets the spec.</summary>
    Task UnloadAsync();

    /// <summary>Where this replica lives and whether it holds a session.</summary>
    [AlwaysInterleave]
    Task<ReplicaStatus> GetStatusAsync();

    /// <summary>
    /// Runs one request. Interleaves: ONNX Runtime sessions are thread-safe. A request whose call is cancelled before it
    /// runs (the caller cancelled, or its call timed out: silos and clients cancel on timeout) is never run.
    /// </summary>
    [AlwaysInterleave]
    Task<InferenceResponse> InferAsync(InferenceRequest request, CancellationToken cancellationToken = default);
}

/// <summary>
/// A model artifact kept by the cluster (key: its SHA-256), so a silo that lacks it can fetch it without a
/// shared filesystem. Used in cluster mode; the embedded node reads its own disk.
/// </summary>
public interface IArtifactGrain : IGrainWithStringKey
{
    /// <summary>Keeps the bytes (their hash must be the key).</summary>
    Task PutAsync(byte[] bytes);

    /// <summary>The bytes, or null when the cluster does not have them.</summary>
    Task<byte[]?> GetAsync();
}

/// <summary>Keys of grains, in one place.</summary>
public static class GrainKeys
{
    public static string Deployment(string model, string version) => $"{model}/{version}";

    /// <summary>A replica's key carries the accelerator it needs, so placement can honour it before activation.</summary>
    public static string Replica(string model, string version, int index, string accelerator) => $"{model}/{version}/{index}/{accelerator}";

    /// <summary>The accelerator a replica key asks for (<c>gpu</c>, <c>cpu</c> or <c>any</c>).</summary>
    public static string ReplicaAccelerator(string key)
    {
        var slash = key.LastIndexOf('/');
        var tail = slash < 0 ? "" : key[(slash + 1)..];
        return Capabilities.IsAcceleratorRequest(tail) ? tail : Capabilities.Any;
    }

    /// <summary>The replica's index within its deployment.</summary>
    public static int ReplicaIndex(string key)
    {
        var parts = key.Split('/');
        return parts.Length >= 3 && int.TryParse(parts[2], System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var i) ? i : 0;
    }

    public static (string Model, string Version) ParseDeployment(string key)
    {
        var slash = key.IndexOf('/', StringComparison.Ordinal);
        return slash < 0 ? (key, "") : (key[..slash], key[(slash + 1)..]);
    }
}

/// <summary>
/// Registers model packages sent through the grain client (the CLI's <c>models push</c>): runs the same import as an
/// HTTP upload on whichever silo takes the call. Stateless worker, key 0.
/// </summary>
public interface IPackageUploadGrain : IGrainWithIntegerKey
{
    /// <summary>Registers a zip holding <c>manifest.json</c> and <c>model.onnx</c>; a bad package is InvalidInput naming the field.</summary>
    Task<ModelVersionInfo> UploadZipAsync(byte[] zip);

    /// <summary>Registers a package sent as its two files; a bad package is InvalidInput naming the field.</summary>
    Task<ModelVersionInfo> UploadPartsAsync(byte[] manifestJson, byte[] model);
}

/// <summary>What the cluster looks like: its silos, their capability tags and hosted replicas. Stateless worker, key 0.</summary>
public interface IClusterInfoGrain : IGrainWithIntegerKey
{
    /// <summary>Silos that are joining, active or stopping, ordered by address.</summary>
    Task<SiloInfo[]> ListSilosAsync();
}
