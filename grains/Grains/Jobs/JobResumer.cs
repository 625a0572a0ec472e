using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MedServe.Grains.Jobs;

/// <summary>
/// Wakes running jobs when the cluster changes: at start (a restarted node picks its jobs up again) and when a
/// silo leaves or dies (a job whose grain lived there reactivates elsewhere from its stored state; a job that
/// had deliveries running there sends them again at once instead of waiting for their lease).
/// </summary>
internal sealed class JobResumer(IClusterMembershipService membership, IGrainFactory grains, ILogger<JobResumer> logger) : BackgroundService
{
    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        HashSet<SiloAddress>? active = null;
        try
        {
            await foreach (var snapshot in membership.MembershipUpdates.WithCancellation(stoppingToken))
            {
                var now = snapshot.Members.Values.Where(m => m.Status == SiloStatus.Active).Select(m => m.SiloAddress).ToHashSet();
                var lost = active is null || active.Any(s => !now.Contains(s));
                active = now;
                if (lost && now.Count > 0)
                {
                    await ResumeAsync(stoppingToken);
                }
            }
        }
        catch (OperationCanceledException) when (stoppingToken.IsCancellationRequested)
        {
        }
    }

    private async Task ResumeAsync(CancellationToken ct)
    {
        try
        {
            var running = await grains.GetGrain<IJobIndexGrain>(0).ListRunningAsync();
            await Task.WhenAll(running.Select(id => grains.GetGrain<IJobGrain>(id).ResumeAsync()));
        }
        catch (Exception e) when (!ct.IsCancellationRequested)
        {
            Log.JobResumeFailed(logger, e);
        }
    }
}
