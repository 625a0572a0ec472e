using Orleans.Concurrency;
using System.Diagnostics;
using Microsoft.AspNetCore.DataProtection.KeyManagement;
using Microsoft.AspNetCore.DataProtection.KeyManagement.Internal;
using Microsoft.Extensions.Options;

namespace MedServe.Grains.Protection;

/// <summary>How this silo's key ring is kept (set by the hosting).</summary>
public sealed record KeyRingSharing(bool Shared)
{
    /// <summary>
    /// How long after its creation a rotated key becomes the one new data is encrypted with. Data Protection already
    /// encrypts with a key up to 5 minutes (its clock-skew allowance) before its activation date, so in a cluster a new
    /// key activates after that allowance plus two reloads of every silo's ring: all know it before any uses it.
    /// </summary>
    public TimeSpan Propagation => Shared ? TimeSpan.FromMinutes(5) + (2 * ClusterKeyManager.RefreshEvery) : TimeSpan.Zero;
}

/// <summary>Key rotation on the silo it runs on (see <see cref="IDataProtectionAdminGrain"/>).</summary>
[StatelessWorker(1)]
internal sealed class DataProtectionAdminGrain(IKeyManager keys, IKeyRingProvider ring, IOptions<KeyManagementOptions> options, KeyRingSharing sharing)
    : Grain, IDataProtectionAdminGrain
{
    public async Task<DataProtectionKeyInfo> RotateAsync()
    {
        var activation = DateTimeOffset.UtcNow + sharing.Propagation;
        // Off the grain's scheduler: the key manager writes through the key repository, which may call a grain.
        var key = await Task.Run(() => keys.CreateNewKey(activation, activation + options.Value.NewKeyLifetime));
        if (!sharing.Shared)
        {
            // The ring reloads in the background after a change: answer once the new key is the one in use.
            for (var wait = Stopwatch.StartNew(); wait.Elapsed < TimeSpan.FromSeconds(10) && await DefaultKeyAsync() != key.KeyId;)
            {
                await Task.Delay(50);
            }
        }
        return Info(key, await DefaultKeyAsync());
    }

    public async Task<DataProtectionKeyInfo[]> ListAsync()
    {
        var all = await Task.Run(keys.GetAllKeys);
        var current = await DefaultKeyAsync();
        return [.. all.OrderBy(k => k.CreationDate).Select(k => Info(k, current))];
    }

    private Task<Guid> DefaultKeyAsync() => Task.Run(() => ring.GetCurrentKeyRing().DefaultKeyId);

    private static DataProtectionKeyInfo Info(IKey key, Guid current) =>
        new(key.KeyId, key.CreationDate, key.ActivationDate, key.ExpirationDate, key.IsRevoked, key.KeyId == current);
}
