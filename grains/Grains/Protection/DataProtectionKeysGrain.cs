namespace MedServe.Grains.Protection;

[GenerateSerializer, Alias("medserve.data-protection-keys-state")]
public sealed class DataProtectionKeysState
{
    /// <summary>Key elements (XML text) in the order they were stored.</summary>
    [Id(0)] public List<string> Elements { get; set; } = [];
    /// <summary>The friendly names Data Protection gave them (<c>key-{id}</c>, <c>revocation-...</c>), same order.</summary>
    [Id(1)] public List<string> Names { get; set; } = [];
}

/// <summary>The cluster's Data Protection key ring in grain storage (see <see cref="IDataProtectionKeysGrain"/>).</summary>
internal sealed class DataProtectionKeysGrain(
    [PersistentState("data-protection-keys", StorageNames.State)] IPersistentState<DataProtectionKeysState> state) : Grain, IDataProtectionKeysGrain
{
    public Task<string[]> GetAllAsync() => Task.FromResult(state.State.Elements.ToArray());

    public async Task StoreAsync(string friendlyName, string xml)
    {
        if (state.State.Elements.Contains(xml, StringComparer.Ordinal))
        {
            return; // a retried store
        }
        state.State.Elements.Add(xml);
        state.State.Names.Add(friendlyName);
        await state.WriteOrReloadAsync(DeactivateOnIdle);
    }
}
