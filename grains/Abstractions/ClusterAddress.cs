namespace MedServe;

/// <summary>How silos and clients name a cluster: one home for the ids and the <c>--cluster redis://host:port</c> form.</summary>
public static class ClusterAddress
{
    /// <summary>Orleans ServiceId of every MedServe cluster (state is keyed by it).</summary>
    public const string ServiceId = "medserve";

    /// <summary>ClusterId of the embedded single node.</summary>
    public const string EmbeddedClusterId = "medserve-embedded";

    /// <summary>ClusterId of a Redis cluster unless <c>--cluster-id</c> says otherwise.</summary>
    public const string DefaultClusterId = "medserve";

    private const string RedisScheme = "redis://";

    /// <summary>The Redis endpoint (<c>host:port</c>) of <c>redis://host:port</c>, or null for an empty value; anything else is an ArgumentException.</summary>
    public static string? RedisEndpoint(string? cluster)
    {
        if (string.IsNullOrWhiteSpace(cluster))
        {
            return null;
        }
        if (!cluster.StartsWith(RedisScheme, StringComparison.OrdinalIgnoreCase) || cluster.Length == RedisScheme.Length)
        {
            throw new ArgumentException($"--cluster must look like redis://host:port, not '{cluster}'");
        }
        return cluster[RedisScheme.Length..].TrimEnd('/');
    }
}
