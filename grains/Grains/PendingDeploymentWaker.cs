using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MedServe.Grains;

/// <summary>
/// When a silo joins, gives every Pending deployment another try (no polling, no retry storm): a gpu
/// deployment waiting for a gpu silo becomes Ready on its own when one starts. When a silo leaves, one silo asks
/// every deployment to check its replicas: they come back on compatible silos, or the deployment turns Pending.
/// </summary>
internal sealed partial class PendingDeploymentWaker(
    IClusterMembershipService membership,
    ISiloMetadataCache metadata,
    IGrainFactory grains,
    ILocalSiloDetails localSilo,
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
                // Gone means dead (or no longer listed), not merely stopping: while a silo shuts down its replicas are
                // still there, and only once it is dead do calls for them activate elsewhere (or find nowhere to go).
                var left = known.Count(s => !snapshot.Members.TryGetValue(s, out var m) || m.Status == SiloStatus.Dead);
                known.RemoveWhere(s => !snapshot.Members.TryGetValue(s, out var m) || m.Status == SiloStatus.Dead);
                if (left > 0 && IsFirstActive(active))
                {
                    // One silo (the first active) checks the deployments whose replicas may have lived on the leaver.
                    await CheckAsync(stoppingToken);
                }
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

    private bool IsFirstActive(List<SiloAddress> active) =>
        active.Count > 0 && active.Select(s => s.ToParsableString()).Order(StringComparer.Ordinal).First() == localSilo.SiloAddress.ToParsableString();

    private async Task CheckAsync(CancellationToken ct)
    {
        try
        {
            var keys = await grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync();
            await Task.WhenAll(keys.Select(k => grains.GetGrain<IDeploymentGrain>(k).CheckReplicasAsync()));
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            CheckFailed(logger, e);
        }
    }

    [LoggerMessage(1402, LogLevel.Warning, "Could not check deployments after a silo left")]
    private static partial void CheckFailed(ILogger logger, Exception exception);

    [LoggerMessage(1401, LogLevel.Warning, "Could not retry pending deployments after a silo joined")]
    private static partial void WakeFailed(ILogger logger, Exception exception);
}
