using MedServe.Dashboard.Components;
using MedServe.Dashboard.Management;
using MedServe.Dashboard.Security;
using MedServe.Dashboard.Services;
using MedServe.Protocol;
using MedServe.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.DependencyInjection.Extensions;
using MudBlazor.Services;
using Orleans.Dashboard;
using Scalar.AspNetCore;

namespace MedServe.Dashboard;

/// <summary>
/// The web app (pages, operator dashboard, management API, its OpenAPI document and reference page, the Orleans
/// Dashboard) on any ASP.NET Core host that has an <see cref="IGrainFactory"/>: the embedded node's silo or the
/// separate <c>medserve-dashboard</c> host.
/// </summary>
public static class WebApp
{
    /// <summary>Where the Orleans Dashboard is mounted.</summary>
    public const string OrleansDashboardPath = "/orleans";

    /// <summary>The management API's reference page.</summary>
    public const string ApiReferencePath = "/api-reference";

    public static IServiceCollection AddMedServeWebApp(this IServiceCollection services, Microsoft.Extensions.Configuration.IConfiguration configuration)
    {
        // Sign-in (keys, cookie), roles as policies: every page and endpoint is protected unless marked otherwise.
        services.AddMedServeSecurity(configuration);
        // Body sizes per endpoint group and request rates per key (MedServe:Limits).
        services.AddMedServeLimits();
        services.AddRazorComponents().AddInteractiveServerComponents();
        services.AddMudServices();
        services.AddManagementApi();
        // Every MedServe document in snake_case, as manifests are written (one home: ManifestJson).
        services.Configure<Microsoft.AspNetCore.Http.Json.JsonOptions>(o =>
        {
            o.SerializerOptions.PropertyNamingPolicy = ManifestJson.Options.PropertyNamingPolicy;
            o.SerializerOptions.DefaultIgnoreCondition = ManifestJson.Options.DefaultIgnoreCondition;
            foreach (var converter in ManifestJson.Options.Converters)
            {
                o.SerializerOptions.Converters.Add(converter);
            }
        });
        services.TryAddSingleton<ModelRouter>();
        services.AddScoped<ClusterApi>();
        services.AddOpenApi("management", o =>
        {
            // The management API (/api/...): V2 inference is the Open Inference Protocol, documented by KServe.
            o.ShouldInclude = d => d.RelativePath?.StartsWith("api/", StringComparison.Ordinal) == true;
            o.AddDocumentTransformer((document, _, _) =>
            {
                document.Info.Title = "MedServe management API";
                document.Info.Description = "Upload, deploy, scale and inspect models; run jobs; list silos. Errors are problem+json naming the field. Inference is the Open Inference Protocol (V2) under /v2.";
                return Task.CompletedTask;
            });
        });
        return services;
    }

    /// <summary>Maps the pages, the management API, <c>/openapi/management.json</c>, the reference page and the Orleans Dashboard.</summary>
    public static WebApplication MapMedServeWebApp(this WebApplication app)
    {
        app.UseAuthentication();
        // After authentication, so a request spends its key's budget (anonymous ones: their address's).
        app.UseRateLimiter();
        app.UseMedServeBodyLimits();
        app.UseAuthorization();
        app.UseAntiforgery();
        app.MapStaticAssets().AllowAnonymous();
        app.MapSignIn();
        app.MapRazorComponents<App>().AddInteractiveServerRenderMode();
        app.MapManagementApi();
        app.MapSiloApi();
        app.MapJobApi();
        app.MapStudyApi();
        app.MapKeyApi();
        app.MapAuditApi();
        app.MapOpenApi("/openapi/{documentName}.json").RequireAuthorization(Permissions.View).RequireRateLimiting(Limits.ManagementPolicy);
        app.MapScalarApiReference(ApiReferencePath, o => o
            .WithTitle("MedServe management API")
            .WithOpenApiRoutePattern("/openapi/{documentName}.json")
            .AddDocument("management")).RequireAuthorization(Permissions.View);
        app.MapOrleansDashboard(OrleansDashboardPath).RequireAuthorization(Permissions.Operate);
        return app;
    }
}
