using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MedServe.Protocol;
using MedServe.Dashboard.Security;
using MedServe.Dashboard.Services;
using MedServe.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace MedServe.Dashboard.Management;

/// <summary>
/// Async jobs over the management API: submit a CSV of records, a set of V2 tensors or DICOM files, watch progress, cancel,
/// download results as JSON or CSV, delete (which removes the job's stored inputs and results).
/// </summary>
public static partial class JobEndpoints
{
    public static IEndpointRouteBuilder MapJobApi(this IEndpointRouteBuilder app)
    {
        var jobs = app.MapGroup("/api/jobs").AddEndpointFilter(ManagementEndpoints.RetryableErrors).RequireAuthorization(Permissions.Infer).RequireRateLimiting(Limits.ManagementPolicy);
        jobs.MapPost("", SubmitAsync).DisableAntiforgery().Audited(AuditActions.JobSubmit);
        jobs.MapGet("", ListAsync);
        jobs.MapGet("/{id}", GetAsync);
        jobs.MapPost("/{id}/cancel", CancelAsync).Audited(AuditActions.JobCancel);
        jobs.MapDelete("/{id}", DeleteAsync).Audited(AuditActions.JobDelete);
        jobs.MapGet("/{id}/results", ResultsAsync).Audited(AuditActions.JobDownload);
        return app;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex JobIdPattern();

    /// <summary>
    /// <c>POST /api/jobs</c>. Either <c>text/csv</c> with <c>?model=</c> (and optional <c>version</c>, <c>id</c>,
    /// <c>columns</c>, <c>outputs</c>): one item per row, an <c>id</c> column naming the items, the feature columns
    /// matched by name unless <c>columns</c> names them (see <see cref="CsvRecords.ReadItems"/>); or JSON
    /// <c>{"model", "version", "id", "outputs", "items": [V2 requests: {"id", "inputs"}]}</c>; or DICOM for an image model
    /// (<see cref="DicomSubmissionAsync"/>). Answers 202 with the job.
    /// </summary>
    private static async Task<IResult> SubmitAsync(HttpRequest request, IGrainFactory grains, ModelRouter router, IOptions<LimitsOptions> options, CancellationToken ct)
    {
        var limits = options.Value;
        var max = limits.MaxJobBytes;
        if (request.ContentLength > max)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the job is {request.ContentLength} bytes; the limit is {max} ({LimitsOptions.Section}:MaxJobBytes)", "body");
        }
        var body = await ReadBodyAsync(request, max, ct);
        var mediaType = request.ContentType?.Split(';')[0].Trim().ToLowerInvariant();
        string[]? List(string name) => request.Query[name].ToString() is { Length: > 0 } list ? list.Split(',', StringSplitOptions.TrimEntries) : null;
        JobSubmission submission;
        string? id;
        if (mediaType is "text/csv")
        {
            var model = request.Query["model"].ToString();
            if (model.Length == 0)
            {
                throw MedServeException.Invalid("a CSV job names its model: POST /api/jobs?model=NAME[&version=V]", "model");
            }
            var version = request.Query["version"].ToString() is { Length: > 0 } v ? v : null;
            submission = await CsvRecords.SubmissionAsync(grains, router, model, version, body, List("columns"), List("outputs"));
            id = request.Query["id"].ToString() is { Length: > 0 } given ? given : null;
        }
        else if (mediaType is "application/json")
        {
            (submission, id) = JsonItems(body, limits);
        }
        else if (mediaType is MedicalFormats.Dicom or "multipart/related" || DicomJobs.IsZip(mediaType))
        {
            submission = await DicomSubmissionAsync(request, mediaType, body, limits, List("outputs"), ct);
            id = request.Query["id"].ToString() is { Length: > 0 } given ? given : null;
        }
        else
        {
            throw MedServeException.Invalid("send a job as text/csv (with ?model=), as application/json, or as DICOM (with ?model=): application/dicom, "
                + "multipart/related; type=\"application/dicom\" or application/zip", "content-type");
        }
        if (submission.Items.Length > limits.MaxJobItems)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the job has {submission.Items.Length} items; the limit is {limits.MaxJobItems} per job ({LimitsOptions.Section}:MaxJobItems): split it into several jobs", "items");
        }
        var inputHash = AuditChain.InputHash(body);
        var key = id is null ? SubmissionKey(mediaType, request.QueryString.Value, body) : null;
        // The items hold everything the job needs: let the body (tens of MB for a large CSV) go before the job grain
        // seals and stores them, rather than at the end of the request.
        body = null!;
        if (id is null)
        {
            // No id given: the server names the job. A retry of the same body (same query) within the window gets
            // the same job back instead of running it twice; after that, retry with the id the first answer gave.
            id = await grains.GetGrain<IJobIndexGrain>(0).ClaimSubmissionAsync(key!, Guid.NewGuid().ToString("N")[..16], SubmitWindowSeconds);
        }
        if (!JobIdPattern().IsMatch(id))
        {
            throw MedServeException.Invalid("a job id is 1 to 64 letters, digits, '.', '_' or '-'", "id");
        }
        Audit.Note(request.HttpContext, submission.Model, submission.Version, inputHash, id);
        var me = request.HttpContext.User.KeyIdOf();
        if (await grains.GetGrain<IJobGrain>(id).GetAsync() is { } existing && !MayRead(request.HttpContext.User, existing))
        {
            throw MedServeException.Conflict("that job id is taken; choose another", "id");
        }
        var info = await grains.GetGrain<IJobGrain>(id).SubmitAsync(submission with { Owner = me });
        return Results.Accepted($"/api/jobs/{id}", info);
    }

    /// <summary>
    /// A DICOM job: one file (<c>application/dicom</c>), a series (<c>multipart/related; type="application/dicom"</c>) or a
    /// zip of files (<c>application/zip</c>), for <c>?model=</c>'s image input; one item per frame or slice (see
    /// <see cref="IDicomInputs.JobItemsAsync"/>). A host that does not decode DICOM answers 415 before reading further.
    /// </summary>
    private static async Task<JobSubmission> DicomSubmissionAsync(HttpRequest request, string mediaType, byte[] body, LimitsOptions limits, string[]? outputs, CancellationToken ct)
    {
        var dicom = DicomJobs.Require(request.HttpContext.RequestServices.GetService(typeof(IDicomInputs)) as IDicomInputs);
        var model = request.Query["model"].ToString();
        if (model.Length == 0)
        {
            throw MedServeException.Invalid("a DICOM job names its model: POST /api/jobs?model=NAME[&version=V]", "model");
        }
        var version = request.Query["version"].ToString() is { Length: > 0 } v ? v : null;
        IReadOnlyList<ReadOnlyMemory<byte>> files;
        if (DicomJobs.IsZip(mediaType))
        {
            files = DicomJobs.Unzip(body, limits.MaxJobBytes, Math.Min(DicomContent.MaxParts, limits.MaxJobItems));
        }
        else
        {
            files = DicomContent.Classify(request.ContentType, out var boundary) == DicomContent.Kind.Series ? DicomContent.Split(body, boundary!) : [body];
        }
        return await DicomJobs.SubmissionAsync(dicom, model, version, files, outputs, ct);
    }

    /// <summary>How long a submit without an id is recognised when sent again.</summary>
    public const int SubmitWindowSeconds = 600;

    private static string SubmissionKey(string? mediaType, string? query, byte[] body)
    {
        using var hash = System.Security.Cryptography.IncrementalHash.CreateHash(System.Security.Cryptography.HashAlgorithmName.SHA256);
        hash.AppendData(Encoding.UTF8.GetBytes($"{mediaType}\n{query}\n"));
        hash.AppendData(body);
        return Convert.ToHexString(hash.GetHashAndReset());
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, long max, CancellationToken ct)
    {
        if (request.ContentLength is { } declared and > 0 && declared <= max && declared <= Array.MaxLength)
        {
            // The usual case: read straight into an array of the declared size. A 40 MB CSV otherwise grows a MemoryStream
            // through every doubling and is copied once more at the end (a tenth of a fresh node's submit).
            var body = GC.AllocateUninitializedArray<byte>((int)declared);
            var filled = 0;
            while (filled < body.Length && await request.Body.ReadAsync(body.AsMemory(filled), ct) is var n and > 0)
            {
                filled += n;
            }
            return filled == body.Length ? body : body[..filled]; // Kestrel refuses a shorter body; this is belt and braces
        }
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > max)
            {
                throw new MedServeException(ErrorKind.TooLarge, $"the job is over the limit of {max} bytes ({LimitsOptions.Section}:MaxJobBytes)", "body");
            }
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0)
        {
            throw MedServeException.Invalid("the job body is empty", "body");
        }
        return buffer.ToArray();
    }

    private static (JobSubmission Submission, string? Id) JsonItems(byte[] body, LimitsOptions limits)
    {
        JsonText.RequireUtf8(body, "the job");
        JsonDocument document;
        try
        {
            document = JsonDocument.Parse(body);
        }
        catch (JsonException e)
        {
            throw MedServeException.Invalid($"the job is not valid JSON (line {e.LineNumber + 1})", "body");
        }
        using (document)
        {
            var root = document.RootElement;
            string? Text(string name) => root.ValueKind == JsonValueKind.Object && root.TryGetProperty(name, out var e) && e.ValueKind != JsonValueKind.Null
                ? (e.ValueKind == JsonValueKind.String ? e.GetString() : throw MedServeException.Invalid($"'{name}' must be a string", name))
                : null;
            var model = Text("model") ?? throw MedServeException.Invalid("the job needs a 'model'", "model");
            if (!root.TryGetProperty("items", out var itemsElement) || itemsElement.ValueKind != JsonValueKind.Array)
            {
                throw MedServeException.Invalid("'items' must be an array of V2 requests ({\"id\", \"inputs\"})", "items");
            }
            var count = itemsElement.GetArrayLength();
            if (count > limits.MaxJobItems)
            {
                // Refused before any item's tensors are made.
                throw new MedServeException(ErrorKind.TooLarge, $"the job has {count} items; the limit is {limits.MaxJobItems} per job ({LimitsOptions.Section}:MaxJobItems): split it into several jobs", "items");
            }
            var items = new List<JobItem>(count);
            foreach (var element in itemsElement.EnumerateArray())
            {
                var field = $"items[{items.Count}]";
                InferenceRequest parsed;
                try
                {
                    parsed = V2Codec.ParseRequest(Encoding.UTF8.GetBytes(element.GetRawText()), null, limits.MaxTensorElements).Request;
                }
                catch (MedServeException e)
                {
                    throw new MedServeException(e.Kind, $"{field}: {e.Message}", $"{field}.{e.Field ?? "inputs"}");
                }
                items.Add(new JobItem(parsed.Id ?? (items.Count + 1).ToString(CultureInfo.InvariantCulture), parsed.Inputs));
            }
            string[]? outputs = null;
            if (root.TryGetProperty("outputs", out var outputsElement) && outputsElement.ValueKind == JsonValueKind.Array)
            {
                outputs = [.. outputsElement.EnumerateArray().Select(o => o.ValueKind == JsonValueKind.String ? o.GetString()! : throw MedServeException.Invalid("'outputs' lists output names", "outputs"))];
            }
            return (new JobSubmission { Model = model, Version = Text("version"), Items = [.. items], Outputs = outputs, Source = "tensors" }, Text("id"));
        }
    }

    /// <summary><c>GET /api/jobs</c>: the job index's summaries, newest first; no job grain is woken.</summary>
    private static async Task<JobInfo[]> ListAsync(IGrainFactory grains, HttpContext context) =>
        [.. (await grains.GetGrain<IJobIndexGrain>(0).ListAsync()).Where(j => MayRead(context.User, j))];

    /// <summary>A job's inputs and results are its submitter's (and admins'): to anyone else it does not exist.</summary>
    public static bool MayRead(System.Security.Claims.ClaimsPrincipal user, JobInfo job) =>
        user.Has(Permissions.Admin) || job.Owner == user.KeyIdOf();

    private static async Task<JobInfo> GetAsync(string id, IGrainFactory grains, HttpContext context) =>
        (JobIdPattern().IsMatch(id) ? await grains.GetGrain<IJobGrain>(id).GetAsync() : null) is { } job && MayRead(context.User, job)
            ? job
            : throw MedServeException.NotFound("no such job");

    private static async Task<JobInfo> CancelAsync(string id, IGrainFactory grains, HttpContext context) => await (await KnownAsync(id, grains, context)).CancelAsync();

    private static async Task<IResult> DeleteAsync(string id, IGrainFactory grains, HttpContext context)
    {
        await (await KnownAsync(id, grains, context)).DeleteAsync();
        return Results.NoContent();
    }

    /// <summary>The job, when it exists and the caller may see it; otherwise 404 (never telling whose it is).</summary>
    private static async Task<IJobGrain> KnownAsync(string id, IGrainFactory grains, HttpContext context)
    {
        await GetAsync(id, grains, context);
        return grains.GetGrain<IJobGrain>(id);
    }

    /// <summary>Items per page when results are read from the job's stored chunks.</summary>
    private const int ResultsPage = 4096;

    /// <summary>
    /// <c>GET /api/jobs/{id}/results?format=json|csv</c>: the answers so far, in item order, streamed a page of stored
    /// results at a time (a big job is never held whole in memory).
    /// </summary>
    private static async Task ResultsAsync(string id, string? format, HttpContext context, IGrainFactory grains)
    {
        var request = context.Request;
        var job = await KnownAsync(id, grains, context);
        var info = await job.GetAsync() ?? throw MedServeException.NotFound("no such job");
        var csv = format?.ToLowerInvariant() switch
        {
            "csv" => true,
            "json" => false,
            null => request.Headers.Accept.ToString().Contains("text/csv", StringComparison.OrdinalIgnoreCase),
            _ => throw MedServeException.Invalid("format is json or csv", "format"),
        };
        var response = context.Response;
        response.ContentType = csv ? "text/csv; charset=utf-8" : "application/json";
        var body = response.Body;
        var ct = context.RequestAborted;
        if (csv)
        {
            var wroteHeader = false;
            for (var offset = 0; offset < Math.Max(info.Total, 1); offset += ResultsPage)
            {
                var text = CsvRecords.WriteResults(await job.GetResultsAsync(offset, ResultsPage));
                var rows = text.IndexOf('\n', StringComparison.Ordinal) + 1;
                await body.WriteAsync(Encoding.UTF8.GetBytes(wroteHeader ? text[rows..] : text), ct);
                wroteHeader = true;
            }
            return;
        }
        await using var writer = new Utf8JsonWriter(body);
        writer.WriteStartObject();
        writer.WriteString("job", info.Id);
        writer.WriteString("model_name", info.Model);
        writer.WriteString("model_version", info.Version);
        writer.WriteString("state", info.State.ToString());
        writer.WriteStartArray("results");
        for (var offset = 0; offset < info.Total; offset += ResultsPage)
        {
            foreach (var result in await job.GetResultsAsync(offset, ResultsPage))
            {
                WriteResult(writer, result);
            }
            await writer.FlushAsync(ct);
        }
        writer.WriteEndArray();
        writer.WriteEndObject();
        await writer.FlushAsync(ct);
    }

    private static void WriteResult(Utf8JsonWriter writer, JobItemResult result)
    {
        writer.WriteStartObject();
        writer.WriteString("id", result.ItemId);
        if (result.Error is { } error)
        {
            writer.WriteString("error", error);
        }
        else
        {
            writer.WriteStartArray("outputs");
            foreach (var output in result.Outputs ?? [])
            {
                writer.WriteStartObject();
                writer.WriteString("name", output.Name);
                writer.WriteString("datatype", output.Datatype.ToString());
                writer.WriteStartArray("shape");
                foreach (var d in output.Shape)
                {
                    writer.WriteNumberValue(d);
                }
                writer.WriteEndArray();
                writer.WriteStartArray("data");
                V2Codec.WriteData(writer, output);
                writer.WriteEndArray();
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
        }
        writer.WriteEndObject();
    }
}
