using System.Security.Claims;
using MedServe.Dashboard.Security;
using MedServe.Routing;
using Microsoft.AspNetCore.Components.Authorization;

namespace MedServe.Dashboard.Services;

/// <summary>
/// What the web app's pages ask of the cluster, through grain calls only (contracts, no grain classes), so the pages
/// run the same in the silo and in a separate dashboard host. Errors come back as <see cref="MedServeException"/>
/// (safe to show: they name fields and ids, never input values); a cluster that cannot answer just now is a
/// retryable NotReady. Every change is checked against the signed-in person's role, as the HTTP API checks a key's.
/// </summary>
public sealed class ClusterApi(IGrainFactory grains, ModelRouter router, AuthenticationStateProvider authentication, AuditWriter audit,
    IServiceProvider services, Microsoft.Extensions.Options.IOptions<LimitsOptions> limits)
{
    /// <summary>This host's DICOM reader (the silo lends one; the separate dashboard host has none).</summary>
    private IDicomInputs? Dicom => services.GetService(typeof(IDicomInputs)) as IDicomInputs;

    /// <summary>Whether this host reads DICOM (the pages offer .dcm files only then).</summary>
    public bool ReadsDicom => Dicom is not null;

    /// <summary>Runs an action and records it in the audit trail with its outcome, as the HTTP API does.</summary>
    private async Task<T> Audited<T>(string action, string? model, string? version, string? input, string? detail, Func<Task<T>> run)
    {
        var actor = (await UserAsync()).KeyIdOf();
        var outcome = "ok";
        try
        {
            return await run();
        }
        catch (MedServeException e)
        {
            outcome = e.Kind.ToString();
            throw;
        }
        finally
        {
            audit.Record(new AuditEvent { Actor = actor, Action = action, Model = model, Version = version, InputSha256 = input, Outcome = outcome, Detail = detail });
        }
    }

    /// <summary>The signed-in person (or key) of this circuit.</summary>
    public async Task<ClaimsPrincipal> UserAsync() => (await authentication.GetAuthenticationStateAsync()).User;

    /// <summary>Refuses (Forbidden) unless the user holds one of <paramref name="anyOf"/>.</summary>
    private async Task RequireAsync(params string[] anyOf)
    {
        var user = await UserAsync();
        if (!anyOf.Any(user.Has))
        {
            throw MedServeException.Forbidden($"your role may not do this (it needs the {string.Join(" or ", anyOf)} permission)");
        }
    }

    public IGrainFactory Grains => grains;

    public Task<ModelInfo[]> ListModelsAsync() => Call(async () =>
    {
        var names = await grains.GetGrain<ICatalogGrain>(0).ListModelsAsync();
        var infos = await Task.WhenAll(names.Select(n => grains.GetGrain<IModelGrain>(n).GetAsync()));
        return infos.OfType<ModelInfo>().ToArray();
    });

    public Task<ModelInfo?> GetModelAsync(string name) =>
        ModelNames.IsValidName(name) ? Call(() => grains.GetGrain<IModelGrain>(name).GetAsync()) : Task.FromResult<ModelInfo?>(null);

    public Task<DeploymentInfo[]> ListDeploymentsAsync() => Call(async () =>
    {
        var keys = await grains.GetGrain<ICatalogGrain>(0).ListDeploymentsAsync();
        return await Task.WhenAll(keys.Select(k => grains.GetGrain<IDeploymentGrain>(k).GetAsync()));
    });

    public Task<DeploymentInfo> GetDeploymentAsync(string name, string version) =>
        Call(() => grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version)).GetAsync());

    public async Task<ModelVersionInfo> UploadAsync(byte[] manifestJson, byte[] model)
    {
        await RequireAsync(Permissions.ManageModels);
        return await Audited(AuditActions.Upload, null, null, AuditChain.InputHash(model), null,
            () => Call(() => grains.GetGrain<IPackageUploadGrain>(0).UploadPartsAsync(manifestJson, model)));
    }

    public async Task<ModelVersionInfo> UploadZipAsync(byte[] zip)
    {
        await RequireAsync(Permissions.ManageModels);
        return await Audited(AuditActions.Upload, null, null, AuditChain.InputHash(zip), null,
            () => Call(() => grains.GetGrain<IPackageUploadGrain>(0).UploadZipAsync(zip)));
    }

    /// <summary>Deploys or re-specs a version: a model manager's; an operator may only re-scale what runs, where it runs.</summary>
    public async Task<DeploymentInfo> DeployAsync(string name, string version, DeploymentSpec spec)
    {
        await RequireAsync(Permissions.ManageModels, Permissions.Operate);
        if (spec.Batching.Problem() is { } problem)
        {
            throw MedServeException.Invalid($"{problem.Field} {problem.Message}", problem.Field);
        }
        var deployment = grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version));
        var current = await Call(deployment.GetAsync);
        if (!(await UserAsync()).Has(Permissions.ManageModels))
        {
            spec = DeploymentRules.ForOperator(current, spec);
        }
        return await Audited(current.State == DeploymentState.Unloaded ? AuditActions.Deploy : AuditActions.Scale, name, version, null,
            $"replicas={spec.Replicas} accelerator={spec.Accelerator ?? "manifest"}", () => Call(() => deployment.DeployAsync(spec)));
    }

    public async Task<DeploymentInfo> UndeployAsync(string name, string version)
    {
        await RequireAsync(Permissions.ManageModels);
        return await Audited(AuditActions.Undeploy, name, version, null, null,
            () => Call(() => grains.GetGrain<IDeploymentGrain>(GrainKeys.Deployment(name, version)).UndeployAsync()));
    }

    public async Task SetDefaultVersionAsync(string name, string? version)
    {
        await RequireAsync(Permissions.ManageModels);
        await Audited(AuditActions.DefaultVersion, name, version, null, null,
            () => Call(async () => { await grains.GetGrain<IModelGrain>(name).SetDefaultVersionAsync(version); return true; }));
    }

    public async Task DeleteVersionAsync(string name, string version)
    {
        await RequireAsync(Permissions.ManageModels);
        await Audited(AuditActions.DeleteVersion, name, version, null, null,
            () => Call(async () => { await grains.GetGrain<IModelGrain>(name).DeleteVersionAsync(version); return true; }));
    }

    /// <summary>One inference through the same router as the V2 API (default version when none is named).</summary>
    public async Task<InferenceResponse> InferAsync(string model, string? version, InferenceRequest request)
    {
        await RequireAsync(Permissions.Infer);
        var input = AuditChain.InputHash(request.Inputs.SelectMany(t => t.Data).ToArray());
        return await Audited(AuditActions.Infer, model, version, input, "web app", () => Call(() => router.InferAsync(model, version, request)));
    }

    /// <summary>
    /// One DICOM file as <paramref name="model"/>'s input tensor (the Try-it page previews it, then sends a frame through
    /// <see cref="InferAsync(string, string?, InferenceRequest, string, string)"/>). Reading runs nothing: not audited.
    /// </summary>
    public async Task<DicomTryInput> ReadDicomAsync(string model, string? version, byte[] file)
    {
        await RequireAsync(Permissions.Infer);
        var dicom = DicomJobs.Require(Dicom);
        return await Call(() => dicom.TensorAsync(model, version, file, CancellationToken.None));
    }

    /// <summary>One inference whose audit record carries the hash of what the person sent (a DICOM file's bytes, as V2 DICOM infer records).</summary>
    public async Task<InferenceResponse> InferAsync(string model, string? version, InferenceRequest request, string inputSha256, string detail)
    {
        await RequireAsync(Permissions.Infer);
        return await Audited(AuditActions.Infer, model, version, inputSha256, detail, () => Call(() => router.InferAsync(model, version, request)));
    }

    /// <summary>
    /// A DICOM job of the files a person picked: each a <c>.dcm</c> file or a zip of them (unpacked under the same rules
    /// as <c>POST /api/jobs</c>), one item per frame (<see cref="IDicomInputs.JobItemsAsync"/>). Answers the job.
    /// </summary>
    public async Task<JobInfo> SubmitDicomJobAsync(string model, string? version, IReadOnlyList<(string Name, byte[] Bytes)> picked)
    {
        await RequireAsync(Permissions.Infer);
        var dicom = DicomJobs.Require(Dicom);
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        foreach (var (_, bytes) in picked)
        {
            hash.AppendData(bytes);
        }
        var input = Convert.ToHexStringLower(hash.GetHashAndReset());
        var owner = (await UserAsync()).KeyIdOf();
        return await Audited(AuditActions.JobSubmit, model, version, input, DicomJobs.Source, async () =>
        {
            var max = Math.Min(Management.DicomContent.MaxParts, limits.Value.MaxJobItems);
            var files = new List<ReadOnlyMemory<byte>>();
            foreach (var (name, bytes) in picked)
            {
                if (name.EndsWith(".zip", StringComparison.OrdinalIgnoreCase))
                {
                    files.AddRange(DicomJobs.Unzip(bytes, limits.Value.MaxJobBytes, max));
                }
                else
                {
                    files.Add(bytes);
                }
            }
            if (files.Count > max)
            {
                throw new MedServeException(ErrorKind.TooLarge, $"the job holds more than {max} files; split it into several jobs", "file");
            }
            return await Call(async () =>
            {
                var submission = await DicomJobs.SubmissionAsync(dicom, model, version, files, null, CancellationToken.None);
                var id = Guid.NewGuid().ToString("N")[..16];
                return await grains.GetGrain<IJobGrain>(id).SubmitAsync(submission with { Owner = owner });
            });
        });
    }

    /// <summary>The studies this user may see (their own; an admin all), with their instances, newest first (at most <paramref name="max"/>).</summary>
    public async Task<StudyInfo[]> ListStudiesAsync(int max = 100)
    {
        await RequireAsync(Permissions.Infer);
        var user = await UserAsync();
        return await Call(async () =>
        {
            var mine = (await grains.GetGrain<IStudyIndexGrain>(0).ListAsync()).Where(s => Management.StudyEndpoints.MayRead(user, s))
                .OrderByDescending(s => s.UpdatedAt).Take(max);
            // The index keeps summaries (no instances): each study's own record has them.
            var full = await Task.WhenAll(mine.Select(s => grains.GetGrain<IStudyGrain>(s.StudyUid).GetAsync()));
            return full.OfType<StudyInfo>().ToArray();
        });
    }

    /// <summary>A CSV job; columns matched to the model's features by name (<see cref="CsvRecords"/>). Answers the job.</summary>
    public async Task<JobInfo> SubmitCsvJobAsync(string model, string? version, byte[] csv)
    {
        await RequireAsync(Permissions.Infer);
        return await Audited(AuditActions.JobSubmit, model, version, AuditChain.InputHash(csv), null, () => SubmitCsvCoreAsync(model, version, csv));
    }

    private async Task<JobInfo> SubmitCsvCoreAsync(string model, string? version, byte[] csv)
    {
        var owner = (await UserAsync()).KeyIdOf();
        return await Call(async () =>
        {
            var submission = await CsvRecords.SubmissionAsync(grains, router, model, version, csv, null, null);
            var id = Guid.NewGuid().ToString("N")[..16];
            return await grains.GetGrain<IJobGrain>(id).SubmitAsync(submission with { Owner = owner });
        });
    }

    /// <summary>The jobs this user may see (their own; an admin all), newest first, from the job index (wakes no job grain).</summary>
    public async Task<JobInfo[]> ListJobsAsync()
    {
        var user = await UserAsync();
        return [.. (await Call(() => grains.GetGrain<IJobIndexGrain>(0).ListAsync())).Where(j => Management.JobEndpoints.MayRead(user, j))];
    }

    /// <summary>A job, or null when there is none this user may see.</summary>
    public async Task<JobInfo?> GetJobAsync(string id)
    {
        var user = await UserAsync();
        return await Call(() => grains.GetGrain<IJobGrain>(id).GetAsync()) is { } job && Management.JobEndpoints.MayRead(user, job) ? job : null;
    }

    private async Task<IJobGrain> OwnJobAsync(string id) =>
        await GetJobAsync(id) is not null ? grains.GetGrain<IJobGrain>(id) : throw MedServeException.NotFound("no such job");

    public async Task<JobInfo> CancelJobAsync(string id)
    {
        await RequireAsync(Permissions.Infer);
        var job = await OwnJobAsync(id);
        return await Audited(AuditActions.JobCancel, null, null, null, id, () => Call(job.CancelAsync));
    }

    public async Task DeleteJobAsync(string id)
    {
        await RequireAsync(Permissions.Infer);
        var job = await OwnJobAsync(id);
        await Audited(AuditActions.JobDelete, null, null, null, id, () => Call(async () => { await job.DeleteAsync(); return true; }));
    }

    public async Task<ApiKeyInfo[]> ListKeysAsync()
    {
        await RequireAsync(Permissions.Admin);
        return await Call(() => grains.GetGrain<IKeyStoreGrain>(0).ListAsync());
    }

    public async Task<NewApiKey> CreateKeyAsync(string name, string role, DateTimeOffset? expiresAt)
    {
        await RequireAsync(Permissions.Admin);
        var by = (await UserAsync()).KeyIdOf();
        return await Audited(AuditActions.KeyCreate, null, null, null, $"role={role}", () => Call(() => grains.GetGrain<IKeyStoreGrain>(0).CreateAsync(name, role, expiresAt, by)));
    }

    public async Task<ApiKeyInfo> RevokeKeyAsync(string id)
    {
        await RequireAsync(Permissions.Admin);
        return await Audited(AuditActions.KeyRevoke, null, null, null, id, () => Call(() => grains.GetGrain<IKeyStoreGrain>(0).RevokeAsync(id)));
    }

    /// <summary>The audit trail, newest first, filtered (admin).</summary>
    public async Task<AuditRecord[]> SearchAuditAsync(string? actor, string? action, string? model, int max)
    {
        await RequireAsync(Permissions.Admin);
        // From the newest back, stopping at max: the trail (every inference) is not read whole for one page of it.
        var found = new List<AuditRecord>(Math.Clamp(max, 0, 1024));
        await foreach (var r in Management.AuditEndpoints.ReadNewestFirstAsync(grains))
        {
            if (found.Count >= max)
            {
                break;
            }
            if ((string.IsNullOrEmpty(actor) || r.Event.Actor == actor) && (string.IsNullOrEmpty(action) || r.Event.Action == action) && (string.IsNullOrEmpty(model) || r.Event.Model == model))
            {
                found.Add(r);
            }
        }
        return [.. found];
    }

    /// <summary>Walks the hash chain (admin): null when it holds, else the first bad record.</summary>
    public async Task<(long Records, string? Problem)> VerifyAuditAsync()
    {
        await RequireAsync(Permissions.Admin);
        return await Call(() => Management.AuditEndpoints.VerifyChainAsync(grains));
    }

    /// <summary>One page of a job's results: the answered items among positions <paramref name="offset"/> to offset + count - 1.</summary>
    public async Task<JobItemResult[]> JobResultsAsync(string id, int offset, int count)
    {
        var job = await OwnJobAsync(id);
        return await Call(() => job.GetResultsAsync(offset, count));
    }

    public Task<SiloInfo[]> ListSilosAsync() => Call(() => grains.GetGrain<IClusterInfoGrain>(0).ListSilosAsync());

    /// <summary>Every active silo's figures over the window; a silo that cannot answer (it is leaving) is left out.</summary>
    public async Task<SiloStats[]> SiloStatsAsync(IEnumerable<SiloInfo> silos, int windowSeconds)
    {
        var asks = silos.Where(s => s.Status is "Active" or "ShuttingDown" or "Stopping")
            .Select(async s =>
            {
                try
                {
                    return await grains.GetGrain<ISiloStatsGrain>(s.Address).GetAsync(windowSeconds).WaitAsync(TimeSpan.FromSeconds(2));
                }
                catch (Exception e) when (e is MedServeException or TimeoutException or OrleansException)
                {
                    return null;
                }
            });
        return (await Task.WhenAll(asks)).OfType<SiloStats>().ToArray();
    }

    private static async Task<T> Call<T>(Func<Task<T>> action)
    {
        try
        {
            return await action();
        }
        catch (Exception e) when (e is TimeoutException or OrleansException)
        {
            throw MedServeException.NotReady($"the cluster could not answer just now ({e.GetType().Name}); try again");
        }
    }
}
