using System.Security.Cryptography;
using System.Text;
using Orleans.Concurrency;

namespace MedServe;

/// <summary>
/// Who may do what. A key (or a signed-in person) has one role; a role grants permissions; every endpoint and page
/// asks for one permission. Admin holds them all.
/// </summary>
public static class Roles
{
    /// <summary>Models, model cards, dashboards.</summary>
    public const string Viewer = "viewer";

    /// <summary>A viewer who may also run inference and jobs (seeing only their own jobs' inputs and results).</summary>
    public const string Clinician = "clinician";

    /// <summary>A viewer who may upload, validate, deploy and undeploy models, set default versions, and try them.</summary>
    public const string ModelManager = "model-manager";

    /// <summary>A viewer who may scale deployments and watch silos.</summary>
    public const string Operator = "operator";

    /// <summary>Everything, including keys and the audit trail.</summary>
    public const string Admin = "admin";

    public static readonly string[] All = [Viewer, Clinician, ModelManager, Operator, Admin];

    public static bool IsValid(string? role) => role is not null && All.Contains(role, StringComparer.Ordinal);

    /// <summary>The permissions a role grants.</summary>
    public static IReadOnlyCollection<string> PermissionsOf(string role) => role switch
    {
        Viewer => [Permissions.View],
        Clinician => [Permissions.View, Permissions.Infer],
        ModelManager => [Permissions.View, Permissions.Infer, Permissions.ManageModels],
        Operator => [Permissions.View, Permissions.Operate],
        Admin => Permissions.All,
        _ => [],
    };
}

/// <summary>What an endpoint or page asks for (also the names of the authorization policies).</summary>
public static class Permissions
{
    public const string View = "view";
    public const string Infer = "infer";
    public const string ManageModels = "manage-models";
    public const string Operate = "operate";
    public const string Admin = "admin";

    public static readonly string[] All = [View, Infer, ManageModels, Operate, Admin];
}

/// <summary>An API key as anyone may see it: never the secret, never its hash.</summary>
[GenerateSerializer, Immutable, Alias("medserve.api-key")]
public sealed record ApiKeyInfo
{
    /// <summary>The key's public id (the part after <c>msk_</c>); what logs and the audit trail name.</summary>
    [Id(0)] public string Id { get; init; } = "";
    [Id(1)] public string Name { get; init; } = "";
    [Id(2)] public string Role { get; init; } = Roles.Viewer;
    [Id(3)] public DateTimeOffset CreatedAt { get; init; }
    [Id(4)] public DateTimeOffset? ExpiresAt { get; init; }
    [Id(5)] public DateTimeOffset? RevokedAt { get; init; }
    /// <summary>The key id of whoever created it.</summary>
    [Id(6)] public string CreatedBy { get; init; } = "";

    /// <summary>Why the key cannot be used at <paramref name="now"/>, or null when it can.</summary>
    public string? Refusal(DateTimeOffset now) =>
        RevokedAt is not null ? "the key was revoked"
        : ExpiresAt is { } expires && expires <= now ? "the key has expired"
        : null;
}

/// <summary>A key just created: the secret is shown this once and kept only as a hash.</summary>
[GenerateSerializer, Immutable, Alias("medserve.new-api-key")]
public sealed record NewApiKey(
    [property: Id(0)] ApiKeyInfo Info,
    [property: Id(1)] string Key);

/// <summary>What the authentication handler needs to check a presented key: the key and its stored hash.</summary>
[GenerateSerializer, Immutable, Alias("medserve.api-key-check")]
public sealed record ApiKeyCheck(
    [property: Id(0)] ApiKeyInfo Info,
    [property: Id(1)] string Sha256);

/// <summary>The cluster's API keys (singleton, key 0), stored as SHA-256 hashes in grain storage.</summary>
public interface IKeyStoreGrain : IGrainWithIntegerKey
{
    /// <summary>Creates a key; the answer carries the secret, which is not kept.</summary>
    Task<NewApiKey> CreateAsync(string name, string role, DateTimeOffset? expiresAt, string createdBy);

    Task<ApiKeyInfo[]> ListAsync();

    /// <summary>Revokes a key (kept, marked revoked, so the audit trail still names it).</summary>
    Task<ApiKeyInfo> RevokeAsync(string id);

    /// <summary>The key with this id and its stored hash, or null. Interleaves: every request's first check may wait on it.</summary>
    [AlwaysInterleave]
    Task<ApiKeyCheck?> FindAsync(string id);

    /// <summary>On a cluster's first start: when no key exists, creates an admin key and returns it (once); null otherwise.</summary>
    Task<NewApiKey?> BootstrapAsync();
}

/// <summary>The format of API keys: <c>msk_{id}_{secret}</c>, 12 hex characters of id and 256 random bits.</summary>
public static class ApiKeys
{
    public const string Prefix = "msk_";

    public static (string Id, string Key) NewKey()
    {
        var id = Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6));
        var secret = Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)).TrimEnd('=').Replace('+', '-').Replace('/', '_');
        return (id, $"{Prefix}{id}_{secret}");
    }

    /// <summary>The id a presented key claims, or null when it is not in the MedServe format.</summary>
    public static string? IdOf(string key)
    {
        if (!key.StartsWith(Prefix, StringComparison.Ordinal) || key.Length < Prefix.Length + 14)
        {
            return null;
        }
        var id = key.Substring(Prefix.Length, 12);
        return key[Prefix.Length + 12] == '_' && id.All(Uri.IsHexDigit) ? id : null;
    }

    /// <summary>What is stored for a key: SHA-256 of it (keys are 256 random bits, so a fast hash is enough).</summary>
    public static string Hash(string key) => Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(key)));
}
