using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Orleans.Runtime.MembershipService.SiloMetadata;

namespace MedServe.Dashboard.Management;

/// <summary>A silo as operators see it: status, what it offers, which replicas it hosts.</summary>
public sealed record SiloView(
    string Address,
    string Name,
    string Status,
    string? Accelerator,
    string? ExecutionProvider,
    string? AcceleratorSource,
    IReadOnlyDictionary<string, string> Labels,
    IReadOnlyList<string> Replicas);

/// <summary><c>GET /api/silos</c>: the cluster's silos with their capability tags and hosted replicas.</summary>
public static class SiloEndpoints
{
    public static IEndpointRouteBuilder MapSiloApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/silos", ListAsync).AddEndpointFilter(ManagementEndpoints.RetryableErrors);
        return app;
    }

    public static async Task<SiloView[]> ListAsync(IGrainFactory grains, IServiceProvider services)
    {
        // On a silo, its own membership view: in memory, so it answers while Redis (the membership table) is away.
        var hosts = services.GetService<IClusterMembershipService>() is { } membership
            ? [.. membership.CurrentSnapshot.Members.Values.Select(m => (m.SiloAddress, m.Name, m.Status))]
            : (await grains.GetGrain<IManagementGrain>(0).GetDetailedHosts(onlyActive: false)).Select(h => (h.SiloAddress, Name: h.SiloName, h.Status)).ToList();
        var metadata = services.GetService<ISiloMetadataCache>();
        var deployments = await Task.WhenAll((await grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync())
            .Select(k => grains.GetGrain<IDeploymentGrain>(k).GetAsync()));
        var replicasBySilo = deployments.SelectMany(d => d.Replicas).ToLookup(r => r.Silo, r => r.Key);
        return [.. hosts
            .Where(h => h.Status is SiloStatus.Active or SiloStatus.Joining or SiloStatus.ShuttingDown or SiloStatus.Stopping)
            .OrderBy(h => h.SiloAddress.ToParsableString(), StringComparer.Ordinal)
            .Select(h =>
            {
                IReadOnlyDictionary<string, string> tags = metadata is null ? new Dictionary<string, string>() : metadata.GetSiloMetadata(h.SiloAddress).Metadata;
                var address = h.SiloAddress.ToParsableString();
                return new SiloView(
                    address,
                    h.Name,
                    h.Status.ToString(),
                    tags.GetValueOrDefault(Capabilities.AcceleratorKey),
                    tags.GetValueOrDefault(Capabilities.ExecutionProviderKey),
                    tags.GetValueOrDefault(Capabilities.SourceKey),
                    tags.Where(t => t.Key.StartsWith(Capabilities.LabelPrefix, StringComparison.Ordinal))
                        .ToDictionary(t => t.Key[Capabilities.LabelPrefix.Length..], t => t.Value),
                    [.. replicasBySilo[address]]);
            })];
    }
}
