namespace MedServe.Grains;

/// <summary>Names the silo configuration and the grains agree on.</summary>
public static class StorageNames
{
    /// <summary>The grain storage that holds registry and deployment state.</summary>
    public const string State = "medserve";
}
