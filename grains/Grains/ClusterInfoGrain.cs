using Orleans.Concurrency;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MedServe.Grains;

/// <summary>
/// The cluster's silos with their capability tags (silo metadata) and the replicas each hosts: the one home of the
/// listing behind <c>GET /api/silos</c> and the CLI's <c>silos</c>.
/// </summary>
[StatelessWorker]
internal sealed class ClusterInfoGrain(ISiloMetadataCache metadata, IClusterMembershipService membership) : Grain, IClusterInfoGrain
{
    public async Task<SiloInfo[]> ListSilosAsync()
    {
        // A stateless worker runs on the calling silo: its own membership view is in memory, so this answers while
        // Redis (the membership table) is away.
        var hosts = membership.CurrentSnapshot.Members.Values.Select(m => (m.SiloAddress, SiloName: m.Name, m.Status)).ToList();
        var deployments = await Task.WhenAll((await GrainFactory.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync())
            .Select(k => GrainFactory.GetGrain<IDeploymentGrain>(k).GetAsync()));
        var replicasBySilo = deployments.SelectMany(d => d.Replicas).ToLookup(r => r.Silo, r => r.Key);
        return [.. hosts
            .Where(h => h.Status is SiloStatus.Active or SiloStatus.Joining or SiloStatus.ShuttingDown or SiloStatus.Stopping)
            .OrderBy(h => h.SiloAddress.ToParsableString(), StringComparer.Ordinal)
            .Select(h =>
            {
                var tags = metadata.GetSiloMetadata(h.SiloAddress).Metadata;
                var address = h.SiloAddress.ToParsableString();
                return new SiloInfo(
                    address,
                    h.SiloName,
                    h.Status.ToString(),
                    tags.GetValueOrDefault(Capabilities.AcceleratorKey),
                    tags.GetValueOrDefault(Capabilities.ExecutionProviderKey),
                    tags.GetValueOrDefault(Capabilities.SourceKey),
                    tags.Where(t => t.Key.StartsWith(Capabilities.LabelPrefix, StringComparison.Ordinal))
                        .ToDictionary(t => t.Key[Capabilities.LabelPrefix.Length..], t => t.Value, StringComparer.Ordinal),
                    [.. replicasBySilo[address]],
                    tags.GetValueOrDefault(Capabilities.FallbackReasonKey));
            })];
    }
}
