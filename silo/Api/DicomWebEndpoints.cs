using System.Security.Cryptography;
using System.Text.Json.Nodes;
using MedServe.Dashboard.Management;
using MedServe.Dashboard.Security;
using MedServe.Medical.Dicom;
using MedServe.Protocol;
using Microsoft.AspNetCore.WebUtilities;
using Microsoft.Extensions.Options;
using Microsoft.Net.Http.Headers;

namespace MedServe.Silo.Api;

/// <summary>
/// DICOMweb STOW-RS (PS3.18 §10.5): <c>POST /dicomweb/studies[/{study}]</c> with <c>multipart/related;
/// type="application/dicom"</c> stores the instances, de-identified (<see cref="DicomDeidentifier"/>) and encrypted at
/// rest, and answers the standard DICOM JSON response: the stored instances (ReferencedSOPSequence, under their new
/// UIDs) and the parts that failed (FailedSOPSequence with a failure reason). Each series whose facts match a deployed
/// model's <c>dicom_routing</c> rule starts a job on that model (<see cref="DicomStudyJobs"/>); <c>GET /api/studies</c>
/// and <c>/api/studies/{uid}</c> (the web app's <see cref="StudyEndpoints"/>) show the studies and their jobs to whoever
/// stored them (and admins).
/// </summary>
public static class DicomWebEndpoints
{
    /// <summary>PS3.4 failure reasons used here.</summary>
    private const int CannotUnderstand = 0xC000;
    private const int StudyMismatch = 0xA900; // "Data Set does not match SOP Class" is closest for a study the path does not name

    public static IEndpointRouteBuilder MapDicomWeb(this IEndpointRouteBuilder app)
    {
        var web = app.MapGroup("/dicomweb").RequireRateLimiting(Limits.InferPolicy);
        web.MapPost("/studies", (HttpContext context, IGrainFactory grains, DicomDecoderPool pool, DicomStudyJobs jobs, IOptions<LimitsOptions> limits) => StoreAsync(context, null, grains, pool, jobs, limits.Value))
            .RequireAuthorization(Permissions.Infer).DisableAntiforgery().Audited(AuditActions.StudyStore);
        web.MapPost("/studies/{study}", (string study, HttpContext context, IGrainFactory grains, DicomDecoderPool pool, DicomStudyJobs jobs, IOptions<LimitsOptions> limits) => StoreAsync(context, study, grains, pool, jobs, limits.Value))
            .RequireAuthorization(Permissions.Infer).DisableAntiforgery().Audited(AuditActions.StudyStore);

        return app;
    }

    private static async Task<IResult> StoreAsync(HttpContext context, string? pathStudy, IGrainFactory grains, DicomDecoderPool pool, DicomStudyJobs jobs, LimitsOptions limits)
    {
        var request = context.Request;
        string? boundary;
        try
        {
            // The same reading of the Content-Type as V2 infer and DICOM jobs (a series: type="application/dicom").
            if (DicomContent.Classify(request.ContentType, out boundary) != DicomContent.Kind.Series)
            {
                throw MedServeException.Unsupported("STOW-RS takes multipart/related; type=\"application/dicom\" (Content-Type)", "Content-Type");
            }
        }
        catch (MedServeException e)
        {
            return HttpErrors.Problem(e);
        }

        var key = await grains.GetGrain<IPseudonymKeyGrain>(0).GetKeyAsync();
        var wantedStudy = pathStudy is null ? null : DicomDeidentifier.HashUid(pathStudy, key);
        var stored = new List<(StoredInstance Instance, StudyInstance Info)>();
        var failed = new List<(string? SopClass, string? Sop, int Reason)>();
        using var hash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
        var reader = new MultipartReader(boundary!, request.Body) { BodyLengthLimit = null };
        try
        {
            while (await NextSectionAsync(reader, context.RequestAborted) is { } section)
            {
                if (section.ContentType is { } ct && !ct.StartsWith(MedicalFormats.Dicom, StringComparison.OrdinalIgnoreCase))
                {
                    failed.Add((null, null, CannotUnderstand));
                    await ReadPartAsync(section, Stream.Null, context.RequestAborted);
                    continue;
                }
                using var part = new MemoryStream();
                await ReadPartAsync(section, part, context.RequestAborted);
                var bytes = part.GetBuffer().AsMemory(0, (int)part.Length);
                hash.AppendData(bytes.Span);
                StoredInstance instance;
                try
                {
                    // The managed parser checks the file and reads what routing needs; GDCM de-identifies it in a worker
                    // process (it aborts on some malformed input, never in the server's).
                    var header = DicomParser.Parse(bytes, limits.MaxDicomPixelBytes);
                    if (header.SopInstanceUid is null || header.SopClassUid is null)
                    {
                        throw MedServeException.Invalid("the file has no SOP Instance UID (0008,0018) or SOP Class UID (0008,0016)", "(0008,0018)");
                    }
                    var deidentified = await pool.DeidentifyAsync(bytes, key, limits.MaxDicomPixelBytes, context.RequestAborted);
                    instance = new StoredInstance(deidentified,
                        DicomDeidentifier.HashUid(header.StudyInstanceUid ?? "study-of-" + header.SopInstanceUid, key),
                        DicomDeidentifier.HashUid(header.SeriesInstanceUid ?? "series-of-" + header.SopInstanceUid, key),
                        DicomDeidentifier.HashUid(header.SopInstanceUid, key), header.SopClassUid, header.InstanceNumber,
                        header.Modality, header.BodyPartExamined, header.SeriesDescription);
                }
                catch (MedServeException e)
                {
                    DicomStudyJobs.Log.InstanceRefused(context.RequestServices.GetRequiredService<ILogger<DicomStudyJobs>>(), e.Kind, e.Field ?? "dicom");
                    failed.Add((null, null, CannotUnderstand));
                    continue;
                }
                if ((wantedStudy ?? stored.FirstOrDefault().Instance?.StudyUid) is { } study && study != instance.StudyUid)
                {
                    // One request, one study (the path's, else the first part's).
                    failed.Add((instance.SopClassUid, instance.SopInstanceUid, StudyMismatch));
                    continue;
                }
                await grains.GetGrain<IDicomInstanceGrain>(instance.SopInstanceUid).StoreAsync(instance.Bytes);
                stored.Add((instance, new StudyInstance
                {
                    SopInstanceUid = instance.SopInstanceUid,
                    SopClassUid = instance.SopClassUid,
                    SeriesUid = instance.SeriesUid,
                    InstanceNumber = instance.InstanceNumber,
                    Sha256 = Convert.ToHexStringLower(SHA256.HashData(instance.Bytes)),
                    Bytes = instance.Bytes.Length,
                    Modality = instance.Modality,
                }));
            }
        }
        catch (MalformedMultipartException)
        {
            return HttpErrors.Problem(MedServeException.Invalid("the multipart/related body is malformed (a part without headers, or the final boundary missing)", "body"));
        }
        Audit.Note(context, inputSha256: Convert.ToHexStringLower(hash.GetHashAndReset()));

        StudyInfo? info = null;
        if (stored.Count > 0)
        {
            var studyUid = stored[0].Instance.StudyUid;
            Audit.Note(context, detail: studyUid);
            info = await grains.GetGrain<IStudyGrain>(studyUid).AddInstancesAsync([.. stored.Select(s => s.Info)], context.User.KeyIdOf());
            var started = await jobs.StartAsync(info, [.. stored.Select(s => s.Instance)], context.User.KeyIdOf(), context.RequestAborted);
            if (started.Length > 0)
            {
                info = await grains.GetGrain<IStudyGrain>(studyUid).AddJobsAsync(started);
            }
        }
        var baseUrl = $"{request.Scheme}://{request.Host}{request.PathBase}/dicomweb/studies";
        var body = new JsonObject();
        if (info is not null)
        {
            body["00081190"] = Element("UR", $"{baseUrl}/{info.StudyUid}");
            body["00081199"] = Sequence(stored.Select(s => new JsonObject
            {
                ["00081150"] = Element("UI", s.Info.SopClassUid),
                ["00081155"] = Element("UI", s.Info.SopInstanceUid),
                ["00081190"] = Element("UR", $"{baseUrl}/{info.StudyUid}/series/{s.Info.SeriesUid}/instances/{s.Info.SopInstanceUid}"),
            }));
        }
        if (failed.Count > 0)
        {
            body["00081198"] = Sequence(failed.Select(f =>
            {
                var item = new JsonObject { ["00081197"] = new JsonObject { ["vr"] = "US", ["Value"] = new JsonArray(f.Reason) } };
                if (f.SopClass is not null)
                {
                    item["00081150"] = Element("UI", f.SopClass);
                    item["00081155"] = Element("UI", f.Sop!);
                }
                return item;
            }));
        }
        // PS3.18: 200 all stored, 202 some stored, 409 none stored.
        var status = failed.Count == 0 && stored.Count > 0 ? StatusCodes.Status200OK : stored.Count > 0 ? StatusCodes.Status202Accepted : StatusCodes.Status409Conflict;
        return Results.Text(body.ToJsonString(), MedicalFormats.DicomJson, System.Text.Encoding.UTF8, status);
    }

    private sealed class MalformedMultipartException(Exception inner) : Exception("malformed multipart body", inner);

    /// <summary>The next part; a body that does not follow multipart's rules is the caller's error (400), not ours.</summary>
    private static async Task<MultipartSection?> NextSectionAsync(MultipartReader reader, CancellationToken cancellationToken)
    {
        try
        {
            return await reader.ReadNextSectionAsync(cancellationToken);
        }
        catch (InvalidDataException e)
        {
            throw new MalformedMultipartException(e);
        }
    }

    private static async Task ReadPartAsync(MultipartSection section, Stream into, CancellationToken cancellationToken)
    {
        try
        {
            await section.Body.CopyToAsync(into, cancellationToken);
        }
        catch (InvalidDataException e)
        {
            throw new MalformedMultipartException(e);
        }
    }

    private static JsonObject Element(string vr, string value) => new() { ["vr"] = vr, ["Value"] = new JsonArray(value) };

    private static JsonObject Sequence(IEnumerable<JsonObject> items) => new() { ["vr"] = "SQ", ["Value"] = new JsonArray([.. items]) };
}
