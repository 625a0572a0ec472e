using System.Diagnostics;
using MedServe.Inference.Packages;
using MedServe.Inference.Runtime;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Options;
using MedServe.Grains.Placement;
using Orleans.Placement;

namespace MedServe.Grains;

/// <summary>What a replica must hold, kept so that a reactivated replica reloads itself before answering.</summary>
[GenerateSerializer, Alias("medserve.replica-state")]
public sealed class ReplicaState
{
    [Id(0)] public ModelManifest? Manifest { get; set; }
    [Id(1)] public string? Sha256 { get; set; }
    [Id(2)] public BatchingPolicy Batching { get; set; } = new();
}

/// <summary>
/// One ONNX Runtime session on one silo. Immovable: the rebalancer must never move a loaded session.
/// A replica that was deactivated (idle, or its silo restarted) comes back on the next call and loads
/// its session during activation, so callers are held, not failed, while it loads.
/// </summary>
[Immovable]
[CollectionAgeLimit(AlwaysActive = true)]
[AcceleratorPlacementFilter]
[ReplicaSpreadPlacement]
internal sealed class ReplicaGrain(
    [PersistentState("replica", StorageNames.State)] IPersistentState<ReplicaState> state,
    ArtifactStore artifacts,
    IOptions<RuntimeOptions> runtime,
    ExecutionPool pool,
    LocalReplicas local,
    ILocalSiloDetails silo,
    TimeProvider time,
    ILogger<ReplicaGrain> logger) : Grain, IReplicaGrain
{
    private IBatcher? _batcher;
    private ReplicaInfo? _info;

    private string Key => this.GetPrimaryKeyString();

    public override async Task OnActivateAsync(CancellationToken cancellationToken)
    {
        if (state.State is { Manifest: { } manifest, Sha256: { } sha })
        {
            try
            {
                await LoadSessionAsync(manifest, sha);
            }
            catch (Exception e)
            {
                // Stay up without a session: the deployment sees NotReady and reports it.
                Log.ReplicaReloadFailed(logger, e, Key, sha);
            }
        }
    }

    public override async Task OnDeactivateAsync(DeactivationReason reason, CancellationToken cancellationToken)
    {
        await StopAsync();
    }

    public async Task<ReplicaInfo> LoadAsync(ModelManifest manifest, string sha256, BatchingPolicy batching)
    {
        if (_info is not null && state.State.Sha256 == sha256)
        {
            await SetBatchingAsync(batching);
            return _info;
        }
        await StopAsync();
        state.State.Batching = batching;
        var info = await LoadSessionAsync(manifest, sha256);
        state.State.Manifest = manifest;
        state.State.Sha256 = sha256;
        await state.WriteStateAsync();
        return info;
    }

    public async Task SetBatchingAsync(BatchingPolicy batching)
    {
        if (state.State.Batching == batching)
        {
            return;
        }
        _batcher?.UpdatePolicy(batching);
        state.State.Batching = batching;
        if (state.RecordExists)
        {
            await state.WriteStateAsync();
        }
    }

    public async Task UnloadAsync()
    {
        await StopAsync();
        if (state.RecordExists)
        {
            await state.ClearStateAsync();
        }
        Log.ReplicaUnloaded(logger, Key);
        DeactivateOnIdle();
    }

    public Task<ReplicaStatus> GetStatusAsync() =>
        Task.FromResult(new ReplicaStatus(Key, silo.SiloAddress.ToParsableString(), _info is not null, _info?.ExecutionProvider));

    public Task<InferenceResponse> InferAsync(InferenceRequest request, CancellationToken cancellationToken = default) =>
        _batcher?.EnqueueAsync(request, cancellationToken)
        ?? Task.FromException<InferenceResponse>(MedServeException.NotReady($"replica {Key} has no loaded session"));

    private async Task<ReplicaInfo> LoadSessionAsync(ModelManifest manifest, string sha256)
    {
        var started = Stopwatch.GetTimestamp();
        if (!artifacts.Contains(sha256))
        {
            // Cluster mode: this silo never saw the upload. Fetch from the cluster, verify, cache on local disk.
            var shared = await GrainFactory.GetGrain<IArtifactGrain>(sha256).GetAsync()
                ?? throw MedServeException.NotFound($"artifact sha256:{sha256} is neither on this silo nor in the cluster");
            await Task.Run(() => artifacts.PutVerifiedAsync(shared, sha256));
        }
        // Reading and hashing a large artifact is blocking work: off the grain scheduler.
        var bytes = await Task.Run(() => artifacts.GetAsync(sha256));
        var options = runtime.Value;
        // Session creation is CPU-bound native work: keep it off the grain scheduler.
        var batching = state.State.Batching;
        var model = await Task.Run(() =>
        {
            var loaded = OnnxModel.Load(bytes, manifest, options);
            // Before the replica says it is loaded: its first callers get a session at full speed.
            loaded.WarmUp(batching.MaxBatchSize);
            return loaded;
        });
        _batcher = new DynamicBatcher(model, state.State.Batching, pool, Key, time);
        // Front ends on this silo now hand requests to the queue directly (ModelRouter), not through a grain message.
        local.Add(Key, _batcher);
        _info = new ReplicaInfo(Key, silo.SiloAddress.ToParsableString(), model.ExecutionProvider, DateTimeOffset.UtcNow);
        Log.ReplicaLoaded(logger, Key, sha256, model.ExecutionProvider, Stopwatch.GetElapsedTime(started).TotalMilliseconds);
        return _info;
    }

    private async Task StopAsync()
    {
        var batcher = _batcher;
        _batcher = null;
        _info = null;
        if (batcher is not null)
        {
            local.Remove(Key, batcher);
            await batcher.DisposeAsync();
        }
    }
}
