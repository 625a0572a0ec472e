using MedServe.Protocol;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using MedServe.Dashboard.Security;
using Microsoft.Extensions.Options;

namespace MedServe.Dashboard.Management;

/// <summary>Limits of the management API.</summary>
public sealed class ManagementOptions
{
    /// <summary>Largest accepted upload (a package's zip or its two parts).</summary>
    public long MaxUploadBytes { get; set; } = 512L * 1024 * 1024;
}

/// <summary>
/// The management API: upload, list, show and delete model versions; deploy, inspect and undeploy them.
/// JSON in snake_case; errors as problem+json naming the field.
/// </summary>
public static class ManagementEndpoints
{
    public static IEndpointRouteBuilder MapManagementApi(this IEndpointRouteBuilder app)
    {
        var api = app.MapGroup("/api").AddEndpointFilter(RetryableErrors).RequireRateLimiting(Limits.ManagementPolicy);

        // Who may call what: see Roles and Permissions (the same policies guard the web app's pages).
        var models = api.MapGroup("/models");
        models.MapPost("", UploadAsync).DisableAntiforgery().RequireAuthorization(Permissions.ManageModels).Audited(AuditActions.Upload);
        models.MapGet("", ListModelsAsync).RequireAuthorization(Permissions.View);
        models.MapGet("/{name}", GetModelAsync).RequireAuthorization(Permissions.View);
        models.MapGet("/{name}/versions/{version}", GetVersionAsync).RequireAuthorization(Permissions.View);
        models.MapDelete("/{name}/versions/{version}", DeleteVersionAsync).RequireAuthorization(Permissions.ManageModels).Audited(AuditActions.DeleteVersion);
        models.MapPut("/{name}/default", SetDefaultAsync).RequireAuthorization(Permissions.ManageModels).Audited(AuditActions.DefaultVersion);

        var deployments = api.MapGroup("/deployments");
        deployments.MapGet("", ListDeploymentsAsync).RequireAuthorization(Permissions.View);
        deployments.MapGet("/{name}/{version}", GetDeploymentAsync).RequireAuthorization(Permissions.View);
        deployments.MapPut("/{name}/{version}", DeployAsync).RequireAuthorization(SecurityHosting.DeployOrScale).Audited(AuditActions.Deploy);
        deployments.MapDelete("/{name}/{version}", UndeployAsync).RequireAuthorization(Permissions.ManageModels).Audited(AuditActions.Undeploy);
        return app;
    }

    /// <summary>MedServe errors as problem+json; storage or a silo not answering (Redis restarting, a silo leaving) as 503 + Retry-After.</summary>
    public static async ValueTask<object?> RetryableErrors(EndpointFilterInvocationContext context, EndpointFilterDelegate next)
    {
        try
        {
            return await next(context);
        }
        catch (MedServeException e)
        {
            return HttpErrors.Problem(e, context.HttpContext);
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            // Nothing was decided: retry.
            return HttpErrors.Problem(MedServeException.NotReady($"the cluster could not answer just now ({e.GetType().Name}); retry"), context.HttpContext);
        }
    }

    /// <summary>
    /// Upload a package: <c>multipart/form-data</c> with <c>manifest</c> and <c>model</c> parts, or a <c>package</c>
    /// zip part; or an <c>application/zip</c> body. <c>?deploy=true</c> deploys it at once.
    /// </summary>
    private static async Task<IResult> UploadAsync(HttpRequest request, IGrainFactory grains, IOptions<ManagementOptions> options, bool? deploy, CancellationToken ct)
    {
        var max = options.Value.MaxUploadBytes;
        if (request.ContentLength > max)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the upload is {request.ContentLength} bytes; the limit is {max}", "body");
        }
        ModelVersionInfo info;
        try
        {
            // Registered through the cluster (the same grain call as the CLI's push), so this API runs as well in a
            // separate dashboard host as in the silo.
            info = await ReadPackageAsync(request, max, grains.GetGrain<IPackageUploadGrain>(0), ct);
            Audit.Note(request.HttpContext, info.Manifest.Name, info.Manifest.Version, info.Sha256);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the upload is over the limit of {max} bytes", "body");
        }
        if (deploy == true)
        {
            await grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(info.Manifest.Name, info.Manifest.Version)).DeployAsync(new DeploymentSpec());
        }
        return Results.Created($"/api/models/{info.Manifest.Name}/versions/{info.Manifest.Version}", info);
    }

    private static async Task<ModelVersionInfo> ReadPackageAsync(HttpRequest request, long max, IPackageUploadGrain upload, CancellationToken ct)
    {
        if (request.HasFormContentType)
        {
            IFormCollection form;
            try
            {
                form = await request.ReadFormAsync(new Microsoft.AspNetCore.Http.Features.FormOptions
                {
                    MultipartBodyLengthLimit = max,
                    ValueLengthLimit = (int)Math.Min(max, int.MaxValue),
                }, ct);
            }
            catch (InvalidDataException e) when (e.Message.Contains("limit", StringComparison.OrdinalIgnoreCase))
            {
                throw new MedServeException(ErrorKind.TooLarge, $"the form is over a size limit: {e.Message}", "body");
            }
            catch (Exception e) when (e is InvalidDataException or IOException && e is not BadHttpRequestException)
            {
                // A form cut short or not multipart at all (a missing boundary, garbage between parts): the caller's fault.
                throw MedServeException.Invalid($"the multipart form is malformed ({e.GetType().Name}): send manifest + model parts, or a package part", "body");
            }
            if (form.Files.GetFile("package") is { } zip)
            {
                await using var stream = zip.OpenReadStream();
                return await upload.UploadZipAsync((await Buffer(stream, max, ct)).ToArray());
            }
            var model = form.Files.GetFile("model") ?? throw MedServeException.Invalid("the form needs a 'model' file part (model.onnx) and a 'manifest' part, or a 'package' zip", "model");
            byte[] manifest;
            if (form.Files.GetFile("manifest") is { } manifestFile)
            {
                await using var s = manifestFile.OpenReadStream();
                manifest = (await Buffer(s, max, ct)).ToArray();
            }
            else if (form.TryGetValue("manifest", out var text) && !string.IsNullOrEmpty(text))
            {
                manifest = System.Text.Encoding.UTF8.GetBytes(text.ToString());
            }
            else
            {
                throw MedServeException.Invalid("the form needs a 'manifest' part (manifest.json)", "manifest");
            }
            await using var modelStream = model.OpenReadStream();
            var modelBytes = (await Buffer(modelStream, max, ct)).ToArray();
            return await upload.UploadPartsAsync(manifest, modelBytes);
        }
        if (request.ContentType is { } type && (type.StartsWith("application/zip", StringComparison.OrdinalIgnoreCase) || type.StartsWith("application/octet-stream", StringComparison.OrdinalIgnoreCase)))
        {
            return await upload.UploadZipAsync((await Buffer(request.Body, max, ct)).ToArray());
        }
        throw MedServeException.Invalid("send multipart/form-data (manifest + model, or package) or an application/zip body", "content-type");
    }

    private static async Task<MemoryStream> Buffer(Stream stream, long max, CancellationToken ct)
    {
        var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await stream.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > max)
            {
                throw new MedServeException(ErrorKind.TooLarge, $"the upload is over the limit of {max} bytes", "body");
            }
            buffer.Write(chunk, 0, read);
        }
        buffer.Position = 0;
        return buffer;
    }

    private static async Task<ModelInfo[]> ListModelsAsync(IGrainFactory grains)
    {
        var names = await grains.GetGrain<ICatalogGrain>(0).ListModelsAsync();
        var infos = await Task.WhenAll(names.Select(n => grains.GetGrain<IModelGrain>(n).GetAsync()));
        return [.. infos.OfType<ModelInfo>()];
    }

    private static async Task<ModelInfo> GetModelAsync(string name, IGrainFactory grains) =>
        (ModelNames.IsValidName(name) ? await grains.GetGrain<IModelGrain>(name).GetAsync() : null)
        ?? throw MedServeException.NotFound($"unknown model '{name}'");

    /// <summary>A version's model card (manifest), artifact hash and deployment state.</summary>
    private static async Task<IResult> GetVersionAsync(string name, string version, IGrainFactory grains)
    {
        var info = await FindVersionAsync(name, version, grains);
        var deployment = await grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version)).GetAsync();
        return Results.Ok(new { version = info, deployment });
    }

    private static async Task<IResult> DeleteVersionAsync(string name, string version, IGrainFactory grains)
    {
        await FindVersionAsync(name, version, grains);
        await grains.GetGrain<IModelGrain>(name).DeleteVersionAsync(version);
        return Results.NoContent();
    }

    public sealed record DefaultVersionBody(string? Version);

    private static async Task<ModelInfo> SetDefaultAsync(string name, DefaultVersionBody body, IGrainFactory grains, HttpContext context)
    {
        Audit.Note(context, version: body.Version ?? "highest deployed");
        var model = grains.GetGrain<IModelGrain>(name);
        _ = await GetModelAsync(name, grains);
        await model.SetDefaultVersionAsync(body.Version);
        return (await model.GetAsync())!;
    }

    private static async Task<DeploymentInfo[]> ListDeploymentsAsync(IGrainFactory grains)
    {
        var keys = await grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync();
        return await Task.WhenAll(keys.Select(k => grains.GetGrain<IDeploymentGrain>(k).GetAsync()));
    }

    private static async Task<DeploymentInfo> GetDeploymentAsync(string name, string version, IGrainFactory grains)
    {
        await FindVersionAsync(name, version, grains);
        return await grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version)).GetAsync();
    }

    /// <summary>Deploys (or re-specs) a version. Body optional: <c>{"replicas": 1, "accelerator": "any"}</c>. <c>?wait=true</c> answers when it is Ready or Failed.</summary>
    private static async Task<IResult> DeployAsync(string name, string version, HttpRequest request, IGrainFactory grains, bool? wait)
    {
        await FindVersionAsync(name, version, grains);
        var spec = new DeploymentSpec();
        if (request.ContentLength is > 0 || request.Headers.TransferEncoding.Count > 0)
        {
            try
            {
                spec = await request.ReadFromJsonAsync<DeploymentSpec>(ManifestJson.Options) ?? spec;
            }
            catch (InvalidOperationException)
            {
                throw MedServeException.Invalid("send the deployment spec as Content-Type: application/json", "content-type");
            }
            catch (System.Text.Json.JsonException e)
            {
                throw MedServeException.Invalid($"the deployment spec is not valid JSON ({e.Path ?? "body"}): expected {{\"replicas\": n, \"accelerator\": \"cpu|gpu|any\"}}", e.Path?.TrimStart('$', '.') ?? "body");
            }
        }
        var deployment = grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version));
        var before = await deployment.GetAsync();
        if (!request.HttpContext.User.Has(Permissions.ManageModels))
        {
            spec = DeploymentRules.ForOperator(before, spec);
        }
        Audit.Note(request.HttpContext, detail: $"replicas={spec.Replicas} accelerator={spec.Accelerator ?? "manifest"}",
            action: before.State == DeploymentState.Unloaded ? AuditActions.Deploy : AuditActions.Scale);
        var info = await deployment.DeployAsync(spec);
        if (wait == true)
        {
            info = await deployment.WaitSettledAsync(TimeSpan.FromMinutes(2));
            return Results.Ok(info);
        }
        return Results.Accepted($"/api/deployments/{name}/{version}", info);
    }

    private static async Task<DeploymentInfo> UndeployAsync(string name, string version, IGrainFactory grains)
    {
        await FindVersionAsync(name, version, grains);
        return await grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version)).UndeployAsync();
    }

    private static async Task<ModelVersionInfo> FindVersionAsync(string name, string version, IGrainFactory grains)
    {
        if (!ModelNames.IsValidName(name))
        {
            throw MedServeException.NotFound($"unknown model '{name}'");
        }
        return (ModelNames.IsValidVersion(version) ? await grains.GetGrain<IModelGrain>(name).GetVersionAsync(version) : null)
            ?? throw MedServeException.NotFound($"model '{name}' has no version '{version}'");
    }

    public static IServiceCollection AddManagementApi(this IServiceCollection services) =>
        services.AddOptions<ManagementOptions>().BindConfiguration("MedServe:Management").Services;
}
