using MedServe.Dashboard.Security;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;

namespace MedServe.Dashboard.Management;

/// <summary>
/// <c>GET /api/studies</c> and <c>/api/studies/{uid}</c>: the studies stored over DICOMweb (de-identified) and the jobs
/// they started, to whoever stored them and admins. Here, with the web app, so the Studies page and the API share one
/// rule (<see cref="MayRead"/>) and the separate dashboard host serves them too; storing (STOW-RS) is the silo's.
/// </summary>
public static class StudyEndpoints
{
    public static IEndpointRouteBuilder MapStudyApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api/studies").AddEndpointFilter(ManagementEndpoints.RetryableErrors).RequireAuthorization(Permissions.Infer).RequireRateLimiting(Limits.ManagementPolicy);
        api.MapGet("", async (HttpContext context, IGrainFactory grains) =>
            (await grains.GetGrain<IStudyIndexGrain>(0).ListAsync()).Where(s => MayRead(context.User, s)).ToArray());
        api.MapGet("/{uid}", async (string uid, HttpContext context, IGrainFactory grains) =>
        {
            var study = (IsUid(uid) ? await grains.GetGrain<IStudyGrain>(uid).GetAsync() : null) is { } s && MayRead(context.User, s)
                ? s
                : throw MedServeException.NotFound("no such study");
            var jobs = await Task.WhenAll(study.Jobs.Select(j => grains.GetGrain<IJobGrain>(j.JobId).GetAsync()));
            return Results.Ok(new { study, jobs = jobs.Where(j => j is not null) });
        });
        return app;
    }

    /// <summary>A study's data is its sender's (and admins'): to anyone else it does not exist.</summary>
    public static bool MayRead(System.Security.Claims.ClaimsPrincipal user, StudyInfo study) =>
        user.Has(Permissions.Admin) || study.Owner == user.KeyIdOf();

    private static bool IsUid(string uid) => uid.Length is > 0 and <= 64 && uid.All(c => char.IsAsciiDigit(c) || c == '.');
}
