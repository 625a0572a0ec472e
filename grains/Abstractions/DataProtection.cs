namespace MedServe;

/// <summary>
/// The cluster's Data Protection key ring (singleton, key 0): the key XML elements, kept in the grain storage (files in
/// the embedded node, Redis in a cluster) so every silo encrypts and decrypts with the same keys. Read and written by
/// each silo's key repository; the keys inside are not encrypted (see README, "Sign-in, roles, audit").
/// </summary>
public interface IDataProtectionKeysGrain : IGrainWithIntegerKey
{
    /// <summary>Every key element stored, as XML text, oldest first.</summary>
    Task<string[]> GetAllAsync();

    /// <summary>Adds a key element (a new key or a revocation); the friendly name is kept beside it.</summary>
    Task StoreAsync(string friendlyName, string xml);
}

/// <summary>A Data Protection key as an admin sees it (never the key material).</summary>
[GenerateSerializer, Immutable, Alias("medserve.data-protection-key")]
public sealed record DataProtectionKeyInfo(
    [property: Id(0)] Guid Id,
    [property: Id(1)] DateTimeOffset CreatedAt,
    [property: Id(2)] DateTimeOffset ActivatesAt,
    [property: Id(3)] DateTimeOffset ExpiresAt,
    [property: Id(4)] bool Revoked,
    /// <summary>The key the answering silo encrypts new data with now.</summary>
    [property: Id(5)] bool Default = false);

/// <summary>Key rotation and listing, run on a silo against its key manager (stateless, key 0).</summary>
public interface IDataProtectionAdminGrain : IGrainWithIntegerKey
{
    /// <summary>
    /// Creates a new key. It becomes the key new data is encrypted with once every silo has read it (on the embedded
    /// node before this returns, in a cluster after a few minutes); older keys stay in the ring, so data encrypted
    /// before stays readable.
    /// </summary>
    Task<DataProtectionKeyInfo> RotateAsync();

    /// <summary>Every key in the ring, oldest first.</summary>
    Task<DataProtectionKeyInfo[]> ListAsync();
}
