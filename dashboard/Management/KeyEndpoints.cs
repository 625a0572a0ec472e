using MedServe.Dashboard.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace MedServe.Dashboard.Management;

/// <summary>
/// API keys (admin only): <c>POST /api/keys</c> creates one and shows its secret once; <c>GET /api/keys</c> lists them
/// (never a secret or a hash); <c>DELETE /api/keys/{id}</c> revokes one. <c>GET /api/admin/data-protection/keys</c>
/// lists the Data Protection keys (ids and dates) and <c>POST /api/admin/data-protection/rotate</c> adds a new one.
/// </summary>
public static class KeyEndpoints
{
    public sealed record NewKeyBody(string? Name, string? Role, DateTimeOffset? ExpiresAt);

    public static IEndpointRouteBuilder MapKeyApi(this IEndpointRouteBuilder app)
    {
        var keys = app.MapGroup("/api/keys").AddEndpointFilter(ManagementEndpoints.RetryableErrors).RequireAuthorization(Permissions.Admin).RequireRateLimiting(Limits.ManagementPolicy);
        keys.MapPost("", async (NewKeyBody body, HttpContext context, IGrainFactory grains) =>
        {
            var created = await grains.GetGrain<IKeyStoreGrain>(0).CreateAsync(body.Name ?? "", body.Role ?? "", body.ExpiresAt, context.User.KeyIdOf());
            Audit.Note(context, detail: $"{created.Info.Id} role={created.Info.Role}");
            return Results.Created($"/api/keys/{created.Info.Id}", new { id = created.Info.Id, key = created.Key, created.Info.Name, created.Info.Role, created.Info.ExpiresAt, created.Info.CreatedAt });
        }).DisableAntiforgery().Audited(AuditActions.KeyCreate);
        keys.MapGet("", (IGrainFactory grains) => grains.GetGrain<IKeyStoreGrain>(0).ListAsync());
        keys.MapDelete("/{id}", (string id, IGrainFactory grains) => grains.GetGrain<IKeyStoreGrain>(0).RevokeAsync(id)).Audited(AuditActions.KeyRevoke);

        // The Data Protection key ring that encrypts job data at rest (and sign-in cookies): list it, add a key.
        var protection = app.MapGroup("/api/admin/data-protection").AddEndpointFilter(ManagementEndpoints.RetryableErrors).RequireAuthorization(Permissions.Admin);
        protection.MapGet("/keys", (IGrainFactory grains) => grains.GetGrain<IDataProtectionAdminGrain>(0).ListAsync());
        protection.MapPost("/rotate", async (HttpContext context, IGrainFactory grains) =>
        {
            var key = await grains.GetGrain<IDataProtectionAdminGrain>(0).RotateAsync();
            Audit.Note(context, detail: $"{key.Id} activates {key.ActivatesAt:O}");
            return Results.Ok(key);
        }).DisableAntiforgery().Audited(AuditActions.DataProtectionRotate);
        return app;
    }
}
