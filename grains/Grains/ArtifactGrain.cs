using MedServe.Inference.Packages;

namespace MedServe.Grains;

[GenerateSerializer, Alias("medserve.artifact-state")]
public sealed class ArtifactState
{
    [Id(0)] public byte[]? Bytes { get; set; }
}

/// <summary>The cluster's copy of one artifact, in the cluster's grain storage (Redis in cluster mode).</summary>
internal sealed class ArtifactGrain(
    [PersistentState("artifact", StorageNames.State)] IPersistentState<ArtifactState> state) : Grain, IArtifactGrain
{
    /// <summary>
    /// Stored once and read when a silo first loads the version: the activation goes once calls stop (several silos may
    /// load it at once), so a model's bytes (up to hundreds of megabytes) do not stay in memory for the collection age.
    /// </summary>
    private LeaveWhenQuiet? _leave;

    private LeaveWhenQuiet Leave => _leave ??= new(this, DeactivateOnIdle, LeaveWhenQuiet.Default);

    public async Task PutAsync(byte[] bytes)
    {
        Leave.Touch();
        if (ArtifactStore.Hash(bytes) != this.GetPrimaryKeyString())
        {
            throw MedServeException.Invalid("artifact bytes do not match their SHA-256 key", "sha256");
        }
        if (state.State.Bytes is null)
        {
            state.State.Bytes = bytes;
            await state.WriteOrReloadAsync(DeactivateOnIdle);
        }
    }

    public Task<byte[]?> GetAsync()
    {
        Leave.Touch();
        return Task.FromResult(state.State.Bytes);
    }
}
