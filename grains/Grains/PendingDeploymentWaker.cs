using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MedServe.Grains;

/// <summary>
/// When a silo joins, gives every Pending deployment another try (no polling, no retry storm): a gpu
/// deployment waiting for a gpu silo becomes Ready on its own when one starts.
/// </summary>
internal sealed partial class PendingDeploymentWaker(
    IClusterMembershipService membership,
    ISiloMetadataCache metadata,
    IGrainFactory grains,
    ILogger<PendingDeploymentWaker> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        var known = new HashSet<SiloAddress>();
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var active = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).ToList();
                var joined = active.Where(s => !known.Contains(s)).ToList();
                known.IntersectWith(active);
                if (joined.Count == 0)
                {
                    continue;
                }
                known.UnionWith(joined);
                await WaitForMetadataAsync(joined, stoppingToken);
                await WakeAsync(stoppingToken);
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    /// <summary>Placement reads the joiner's metadata from the cache; give the cache a moment to fetch it.</summary>
    private async Task WaitForMetadataAsync(List<SiloAddress> joined, CancellationToken ct)
    {
        for (var i = 0; i < 50 && joined.Any(s => metadata.GetSiloMetadata(s).Metadata.Count == 0); i++)
        {
            await Task.Delay(100, ct);
        }
    }

    private async Task WakeAsync(CancellationToken ct)
    {
        try
        {
            var keys = await grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync();
            await Task.WhenAll(keys.Select(k => grains.GetGrain<IDeploymentGrain>(k).RetryIfPendingAsync()));
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            WakeFailed(logger, e);
        }
    }

    [LoggerMessage(1401, LogLevel.Warning, "Could not retry pending deployments after a silo joined")]
    private static partial void WakeFailed(ILogger logger, Exception exception);
}
