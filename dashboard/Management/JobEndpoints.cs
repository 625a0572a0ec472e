using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using MedServe.Protocol;
using MedServe.Routing;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Options;

namespace MedServe.Dashboard.Management;

/// <summary>
/// Async jobs over the management API: submit a CSV of records or a set of V2 tensors, watch progress, cancel,
/// download results as JSON or CSV, delete (which removes the job's stored inputs and results).
/// </summary>
public static partial class JobEndpoints
{
    public static IEndpointRouteBuilder MapJobApi(this IEndpointRouteBuilder app)
    {
        var jobs = app.MapGroup("/api/jobs").AddEndpointFilter(ManagementEndpoints.RetryableErrors);
        jobs.MapPost("", SubmitAsync).DisableAntiforgery();
        jobs.MapGet("", ListAsync);
        jobs.MapGet("/{id}", GetAsync);
        jobs.MapPost("/{id}/cancel", CancelAsync);
        jobs.MapDelete("/{id}", DeleteAsync);
        jobs.MapGet("/{id}/results", ResultsAsync);
        return app;
    }

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")]
    private static partial Regex JobIdPattern();

    /// <summary>
    /// <c>POST /api/jobs</c>. Either <c>text/csv</c> with <c>?model=</c> (and optional <c>version</c>, <c>id</c>,
    /// <c>columns</c>, <c>outputs</c>): one item per row, an <c>id</c> column naming the items, the feature columns
    /// matched by name unless <c>columns</c> names them (see <see cref="CsvRecords.ReadItems"/>); or JSON
    /// <c>{"model", "version", "id", "outputs", "items": [V2 requests: {"id", "inputs"}]}</c>. Answers 202 with the job.
    /// </summary>
    private static async Task<IResult> SubmitAsync(HttpRequest request, IGrainFactory grains, ModelRouter router, IOptions<ManagementOptions> options, CancellationToken ct)
    {
        var max = options.Value.MaxUploadBytes;
        if (request.ContentLength > max)
        {
            throw new MedServeException(ErrorKind.TooLarge, $"the job is {request.ContentLength} bytes; the limit is {max}", "body");
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
            (submission, id) = JsonItems(body);
        }
        else
        {
            throw MedServeException.Invalid("send a job as text/csv (with ?model=) or as application/json", "content-type");
        }
        id ??= Guid.NewGuid().ToString("N")[..16];
        if (!JobIdPattern().IsMatch(id))
        {
            throw MedServeException.Invalid("a job id is 1 to 64 letters, digits, '.', '_' or '-'", "id");
        }
        var info = await grains.GetGrain<IJobGrain>(id).SubmitAsync(submission);
        return Results.Accepted($"/api/jobs/{id}", info);
    }

    private static async Task<byte[]> ReadBodyAsync(HttpRequest request, long max, CancellationToken ct)
    {
        using var buffer = new MemoryStream();
        var chunk = new byte[81920];
        int read;
        while ((read = await request.Body.ReadAsync(chunk, ct)) > 0)
        {
            if (buffer.Length + read > max)
            {
                throw new MedServeException(ErrorKind.TooLarge, $"the job is over the limit of {max} bytes", "body");
            }
            buffer.Write(chunk, 0, read);
        }
        if (buffer.Length == 0)
        {
            throw MedServeException.Invalid("the job body is empty", "body");
        }
        return buffer.ToArray();
    }

    private static (JobSubmission Submission, string? Id) JsonItems(byte[] body)
    {
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
            var items = new List<JobItem>();
            foreach (var element in itemsElement.EnumerateArray())
            {
                var field = $"items[{items.Count}]";
                InferenceRequest parsed;
                try
                {
                    parsed = V2Codec.ParseRequest(Encoding.UTF8.GetBytes(element.GetRawText()), null).Request;
                }
                catch (MedServeException e)
                {
                    throw MedServeException.Invalid($"{field}: {e.Message}", $"{field}.{e.Field ?? "inputs"}");
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
    private static Task<JobInfo[]> ListAsync(IGrainFactory grains) => grains.GetGrain<IJobIndexGrain>(0).ListAsync();

    private static async Task<JobInfo> GetAsync(string id, IGrainFactory grains) =>
        (JobIdPattern().IsMatch(id) ? await grains.GetGrain<IJobGrain>(id).GetAsync() : null)
        ?? throw MedServeException.NotFound($"no job '{id}'");

    private static Task<JobInfo> CancelAsync(string id, IGrainFactory grains) => Known(id, grains).CancelAsync();

    private static async Task<IResult> DeleteAsync(string id, IGrainFactory grains)
    {
        await Known(id, grains).DeleteAsync();
        return Results.NoContent();
    }

    private static IJobGrain Known(string id, IGrainFactory grains) =>
        JobIdPattern().IsMatch(id) ? grains.GetGrain<IJobGrain>(id) : throw MedServeException.NotFound($"no job '{id}'");

    /// <summary><c>GET /api/jobs/{id}/results?format=json|csv</c>: the answers so far, in item order.</summary>
    private static async Task<IResult> ResultsAsync(string id, string? format, HttpRequest request, IGrainFactory grains)
    {
        var job = Known(id, grains);
        var info = await job.GetAsync() ?? throw MedServeException.NotFound($"no job '{id}'");
        var results = await job.GetResultsAsync();
        var csv = format?.ToLowerInvariant() switch
        {
            "csv" => true,
            "json" => false,
            null => request.Headers.Accept.ToString().Contains("text/csv", StringComparison.OrdinalIgnoreCase),
            _ => throw MedServeException.Invalid("format is json or csv", "format"),
        };
        return csv
            ? Results.Text(CsvRecords.WriteResults(results), "text/csv", Encoding.UTF8)
            : Results.Bytes(ResultsJson(info, results), "application/json");
    }

    private static byte[] ResultsJson(JobInfo info, JobItemResult[] results)
    {
        using var buffer = new MemoryStream();
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("job", info.Id);
            writer.WriteString("model_name", info.Model);
            writer.WriteString("model_version", info.Version);
            writer.WriteString("state", info.State.ToString());
            writer.WriteStartArray("results");
            foreach (var result in results)
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
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        return buffer.ToArray();
    }
}
