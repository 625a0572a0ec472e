namespace MedServe.Grains;

[GenerateSerializer, Alias("medserve.catalog-state")]
public sealed class CatalogState
{
    [Id(0)] public SortedSet<string> Models { get; set; } = new(StringComparer.Ordinal);
    [Id(1)] public SortedSet<string> Deployments { get; set; } = new(StringComparer.Ordinal);
    // Ids 2 and 3 held job ids before the job index (IJobIndexGrain) took them over.
}

/// <summary>The index of models and wanted deployments; the silo reads it at start to bring deployments back.</summary>
internal sealed class CatalogGrain(
    [PersistentState("catalog", StorageNames.State)] IPersistentState<CatalogState> state) : Grain, ICatalogGrain
{
    public Task<string[]> ListModelsAsync() => Task.FromResult(state.State.Models.ToArray());

    public Task AddModelAsync(string name) => state.State.Models.Add(name) ? state.WriteOrReloadAsync(DeactivateOnIdle) : Task.CompletedTask;

    public Task RemoveModelAsync(string name) => state.State.Models.Remove(name) ? state.WriteOrReloadAsync(DeactivateOnIdle) : Task.CompletedTask;

    public Task<string[]> ListDeploymentsAsync() => Task.FromResult(state.State.Deployments.ToArray());

    public Task SetDeploymentAsync(string key, bool active)
    {
        var changed = active ? state.State.Deployments.Add(key) : state.State.Deployments.Remove(key);
        return changed ? state.WriteOrReloadAsync(DeactivateOnIdle) : Task.CompletedTask;
    }
}
