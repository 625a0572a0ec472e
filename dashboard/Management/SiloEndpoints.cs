using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using MedServe.Dashboard.Security;

namespace MedServe.Dashboard.Management;

/// <summary><c>GET /api/silos</c>: the cluster's silos with their capability tags and hosted replicas (<see cref="IClusterInfoGrain"/>).</summary>
public static class SiloEndpoints
{
    public static IEndpointRouteBuilder MapSiloApi(this IEndpointRouteBuilder app)
    {
        app.MapGet("/api/silos", (IGrainFactory grains) => grains.GetGrain<IClusterInfoGrain>(0).ListSilosAsync()).AddEndpointFilter(ManagementEndpoints.RetryableErrors).RequireAuthorization(Permissions.View).RequireRateLimiting(Limits.ManagementPolicy);
        return app;
    }
}
