using System.Globalization;
using System.Runtime.InteropServices;
using System.Text.Json;
using Microsoft.ML.OnnxRuntime;
using Microsoft.ML.OnnxRuntime.Tensors;

// What a user would write instead of MedServe: an ASP.NET Core minimal API that loads each ONNX model into one
// InferenceSession (ONNX Runtime's default options unless --intra-op-threads is given) and calls session.Run once
// per request. It speaks enough of the Open Inference Protocol (V2) for the bench: FP32 tensors as flat JSON
// `data` or with the binary tensor extension, `outputs` filters and binary outputs.
// Usage: medserve-naive-server --urls http://127.0.0.1:8090 --models name=path.onnx[,name=path.onnx] [--intra-op-threads N]
var builder = WebApplication.CreateBuilder(args);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
var app = builder.Build();

var sessions = new Dictionary<string, InferenceSession>(StringComparer.Ordinal);
var threads = app.Configuration["intra-op-threads"];
foreach (var spec in (app.Configuration["models"] ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries))
{
    var eq = spec.IndexOf('=', StringComparison.Ordinal);
    using var options = new Microsoft.ML.OnnxRuntime.SessionOptions();
    if (threads is not null)
    {
        options.IntraOpNumThreads = int.Parse(threads, CultureInfo.InvariantCulture);
    }
    sessions[spec[..eq]] = new InferenceSession(spec[(eq + 1)..], options);
}

app.MapGet("/v2/health/live", () => Results.Ok(new { live = true }));
app.MapGet("/v2/health/ready", () => Results.Ok(new { ready = true }));
app.MapPost("/v2/models/{name}/infer", async (string name, HttpRequest request) =>
{
    if (!sessions.TryGetValue(name, out var session))
    {
        return Results.Json(new { error = $"unknown model '{name}'" }, statusCode: 404);
    }
    using var buffer = new MemoryStream();
    await request.Body.CopyToAsync(buffer);
    var body = buffer.GetBuffer().AsMemory(0, (int)buffer.Length);
    var jsonLength = request.Headers.TryGetValue("Inference-Header-Content-Length", out var h)
        ? int.Parse(h.ToString(), CultureInfo.InvariantCulture)
        : body.Length;
    try
    {
        using var doc = JsonDocument.Parse(body[..jsonLength]);
        var root = doc.RootElement;
        var inputs = new List<NamedOnnxValue>();
        var offset = jsonLength;
        foreach (var input in root.GetProperty("inputs").EnumerateArray())
        {
            var shape = input.GetProperty("shape").EnumerateArray().Select(d => d.GetInt32()).ToArray();
            float[] data;
            if (input.TryGetProperty("parameters", out var p) && p.TryGetProperty("binary_data_size", out var size))
            {
                var n = size.GetInt32();
                data = MemoryMarshal.Cast<byte, float>(body.Span.Slice(offset, n)).ToArray();
                offset += n;
            }
            else
            {
                data = input.GetProperty("data").EnumerateArray().Select(v => v.GetSingle()).ToArray();
            }
            inputs.Add(NamedOnnxValue.CreateFromTensor(input.GetProperty("name").GetString()!, new DenseTensor<float>(data, shape)));
        }

        var allBinary = root.TryGetProperty("parameters", out var rp) && rp.TryGetProperty("binary_data_output", out var bdo) && bdo.GetBoolean();
        var wanted = new List<string>();
        var binary = new HashSet<string>(StringComparer.Ordinal);
        if (root.TryGetProperty("outputs", out var outputs))
        {
            foreach (var o in outputs.EnumerateArray())
            {
                var outputName = o.GetProperty("name").GetString()!;
                wanted.Add(outputName);
                if (allBinary || (o.TryGetProperty("parameters", out var op) && op.TryGetProperty("binary_data", out var bd) && bd.GetBoolean()))
                {
                    binary.Add(outputName);
                }
            }
        }
        using var results = wanted.Count > 0 ? session.Run(inputs, wanted) : session.Run(inputs);

        using var json = new MemoryStream();
        var tail = new List<float[]>();
        using (var writer = new Utf8JsonWriter(json))
        {
            writer.WriteStartObject();
            writer.WriteString("model_name", name);
            writer.WriteString("model_version", "1");
            if (root.TryGetProperty("id", out var id))
            {
                writer.WriteString("id", id.GetString());
            }
            writer.WriteStartArray("outputs");
            foreach (var result in results)
            {
                var tensor = result.AsTensor<float>();
                writer.WriteStartObject();
                writer.WriteString("name", result.Name);
                writer.WriteString("datatype", "FP32");
                writer.WriteStartArray("shape");
                foreach (var d in tensor.Dimensions)
                {
                    writer.WriteNumberValue(d);
                }
                writer.WriteEndArray();
                var values = tensor.ToArray();
                if (allBinary || binary.Contains(result.Name))
                {
                    writer.WriteStartObject("parameters");
                    writer.WriteNumber("binary_data_size", values.Length * sizeof(float));
                    writer.WriteEndObject();
                    tail.Add(values);
                }
                else
                {
                    writer.WriteStartArray("data");
                    foreach (var v in values)
                    {
                        writer.WriteNumberValue(v);
                    }
                    writer.WriteEndArray();
                }
                writer.WriteEndObject();
            }
            writer.WriteEndArray();
            writer.WriteEndObject();
        }
        if (tail.Count == 0)
        {
            return Results.Bytes(json.ToArray(), "application/json");
        }
        var headerLength = json.Length;
        foreach (var values in tail)
        {
            json.Write(MemoryMarshal.AsBytes(values.AsSpan()));
        }
        request.HttpContext.Response.Headers["Inference-Header-Content-Length"] = headerLength.ToString(CultureInfo.InvariantCulture);
        return Results.Bytes(json.ToArray(), "application/octet-stream");
    }
    catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or OnnxRuntimeException or ArgumentException or FormatException)
    {
        return Results.Json(new { error = e.GetType().Name + ": " + e.Message }, statusCode: 400);
    }
});

app.Run();
