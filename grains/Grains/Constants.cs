namespace MedServe.Grains;

/// <summary>Names the silo configuration and the grains agree on.</summary>
public static class StorageNames
{
    /// <summary>The grain storage that holds registry and deployment state.</summary>
    public const string State = "medserve";
}

/// <summary>Keeps a grain's memory from outliving a write its storage refused.</summary>
internal static class StateWrites
{
    /// <summary>
    /// Writes the state; when storage refuses (Redis away), deactivates the grain before rethrowing, so its
    /// next activation reloads what storage really holds and a retry is not mistaken for "already done".
    /// </summary>
    public static async Task WriteOrReloadAsync<T>(this IPersistentState<T> state, Action deactivateOnIdle)
    {
        try
        {
            await state.WriteStateAsync();
        }
        catch
        {
            deactivateOnIdle();
            throw;
        }
    }
}
