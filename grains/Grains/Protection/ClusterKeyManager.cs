using Microsoft.AspNetCore.DataProtection.KeyManagement;

namespace MedServe.Grains.Protection;

/// <summary>
/// Data Protection's key manager with a key ring that expires every <see cref="RefreshEvery"/>: each silo caches the
/// ring (by default for 24 h) and learns of a key another silo created only when it reloads it, so a shared ring must
/// be reloaded often. A reload is one grain call.
/// </summary>
internal sealed class ClusterKeyManager(IKeyManager inner) : IKeyManager
{
    /// <summary>How stale a silo's view of the key ring may be.</summary>
    public static readonly TimeSpan RefreshEvery = TimeSpan.FromMinutes(1);

    public IKey CreateNewKey(DateTimeOffset activationDate, DateTimeOffset expirationDate) => inner.CreateNewKey(activationDate, expirationDate);

    public IReadOnlyCollection<IKey> GetAllKeys() => inner.GetAllKeys();

    public CancellationToken GetCacheExpirationToken()
    {
        // Asked once per key ring load: the ring expires when this process changes it or after RefreshEvery.
        var timer = new CancellationTokenSource(RefreshEvery);
        return CancellationTokenSource.CreateLinkedTokenSource(inner.GetCacheExpirationToken(), timer.Token).Token;
    }

    public void RevokeAllKeys(DateTimeOffset revocationDate, string? reason = null) => inner.RevokeAllKeys(revocationDate, reason);

    public void RevokeKey(Guid keyId, string? reason = null) => inner.RevokeKey(keyId, reason);
}
