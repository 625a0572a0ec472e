using System.Net.Http.Headers;
using System.Text;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>
/// Hostile input at every public endpoint: malformed JSON, invalid UTF-8, random binary, wrong content types, a
/// multipart of garbage, zip bombs and a fake DICOM file. Only 4xx answers (never 5xx, never a dropped connection), and
/// the node still serves afterwards. The bodies come from a fixed seed, so a failure repeats.
/// </summary>
public sealed class FuzzTests(SmallLimitsNode node) : IClassFixture<SmallLimitsNode>
{
    private static readonly (string Method, string Path)[] Endpoints = PublicEndpoints.All;

    /// <summary>A body; <paramref name="Header"/> an extra request header; not <paramref name="Hostile"/> when the body is valid JSON and only the header is wrong (an endpoint without that header may accept it).</summary>
    private sealed record Body(string Name, Func<HttpContent> Content, (string Header, string Value)? Header = null, bool Hostile = true);

    private static ByteArrayContent Bytes(byte[] bytes, string type)
    {
        var content = new ByteArrayContent(bytes);
        content.Headers.ContentType = MediaTypeHeaderValue.Parse(type);
        return content;
    }

    private static List<Body> Bodies()
    {
        var random = new Random(20261207);
        byte[] RandomBytes(int n)
        {
            var b = new byte[n];
            random.NextBytes(b);
            return b;
        }
        var binary = RandomBytes(4096);
        var garbage = RandomBytes(1024);
        // Every JSON string that any endpoint reads (tensor names, ids, model, version, key name and role), with ff fe in it.
        var invalidUtf8 = Encoding.UTF8.GetBytes("""{"id":"I","model":"M","version":"V","name":"N","role":"R","replicas":1,"accelerator":"A","inputs":[{"name":"N","datatype":"FP32","shape":[1,10],"data":[1,2,3,4,5,6,7,8,9,10]}],"items":[{"id":"I","inputs":[{"name":"N","datatype":"FP32","shape":[1,10],"data":[1,2,3,4,5,6,7,8,9,10]}]}],"outputs":["O"]}""")
            .SelectMany(b => b is (byte)'I' or (byte)'M' or (byte)'V' or (byte)'N' or (byte)'R' or (byte)'A' or (byte)'O' ? new byte[] { b, 0xff, 0xfe } : [b]).ToArray();
        var dicom = new byte[128].Concat("DICM"u8.ToArray()).Concat(garbage).ToArray();
        var manifest = File.ReadAllBytes(Path.Combine(Paths.Samples, "diabetes-linear", "manifest.json"));
        // Zip bombs: a few hundred kilobytes each that unpack to hundreds of megabytes of zeros.
        var bomb = LimitsTests.ZipOfZeros(("manifest.json", 16L << 20), ("model.onnx", 200L << 20));
        var bombWithManifest = LimitsTests.ZipOfZeros(("manifest.json", Encoding.UTF8.GetBytes(Encoding.UTF8.GetString(manifest).Replace("\"diabetes-linear\"", "\"fuzz-bomb\"", StringComparison.Ordinal))), ("model.onnx", 40L << 20));
        var validInfer = LimitedNode.GoodInfer;
        return
        [
            new("truncated JSON", () => new StringContent(validInfer[..(validInfer.Length / 2)], Encoding.UTF8, "application/json")),
            new("JSON of the wrong shape", () => new StringContent("""[{"inputs":{"name":1}}, null, "x", 1e400]""", Encoding.UTF8, "application/json")),
            new("deeply nested JSON", () => new StringContent(new string('[', 100_000) + new string(']', 100_000), Encoding.UTF8, "application/json")),
            new("invalid UTF-8 in every string", () => Bytes(invalidUtf8, "application/json")),
            new("invalid UTF-8 as CSV", () => Bytes([.. "id,age,sex\n"u8, 0xff, 0xfe, .. ",1,2\n"u8], "text/csv")),
            new("random binary as JSON", () => Bytes(binary, "application/json")),
            new("random binary", () => Bytes(binary, "application/octet-stream")),
            new("random binary with a binary-tensor header", () => Bytes(binary, "application/octet-stream"), ("Inference-Header-Content-Length", "37")),
            new("a bad binary-tensor header", () => new StringContent(validInfer, Encoding.UTF8, "application/json"), ("Inference-Header-Content-Length", "-1"), Hostile: false),
            new("JSON as text/plain", () => new StringContent("""{"inputs":[""", Encoding.UTF8, "text/plain")),
            new("a form of garbage", () => new FormUrlEncodedContent([new("manifest", "\u0000\uffff"), new("__RequestVerificationToken", "x")])),
            new("multipart with garbage parts", () => new MultipartFormDataContent
            {
                { Bytes(garbage, "application/octet-stream"), "manifest", "manifest.json" },
                { Bytes(binary, "application/octet-stream"), "model", "model.onnx" },
                { Bytes(garbage, "application/zip"), "package", "package.zip" },
            }),
            new("a multipart that never ends", () => Bytes([.. "--xyz\r\nContent-Disposition: form-data; name=\"model\"; filename=\"m\"\r\n\r\n"u8, .. garbage], "multipart/form-data; boundary=xyz")),
            new("a multipart with no boundary", () => Bytes(garbage, "multipart/form-data")),
            new("a zip bomb", () => Bytes(bomb, "application/zip")),
            new("a zip bomb with a valid manifest", () => Bytes(bombWithManifest, "application/zip")),
            new("a zip bomb as a package part", () => new MultipartFormDataContent { { Bytes(bomb, "application/zip"), "package", "package.zip" } }),
            new("a random zip", () => Bytes([.. "PK\u0003\u0004"u8, .. garbage], "application/zip")),
            new("a fake DICOM file", () => Bytes(dicom, "application/dicom")),
            // FHIR: truncated JSON, resources of the wrong type, an Observation whose value FHIR allows but no model takes.
            new("truncated FHIR JSON", () => Bytes("""{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","valueQuantity":{"value":"""u8.ToArray(), "application/fhir+json")),
            new("FHIR JSON that breaks the FHIR rules", () => Bytes("""{"resourceType":"Bundle","entry":{"resource":[1,2]},"type":7,"unknownElement":{"resourceType":"Nothing"}}"""u8.ToArray(), "application/fhir+json"), Hostile: false),
            new("a FHIR Patient", () => Bytes("""{"resourceType":"Patient","id":"p1","gender":"female"}"""u8.ToArray(), "application/fhir+json"), Hostile: false),
            new("a FHIR resource type that does not exist", () => Bytes("""{"resourceType":"NoSuchResource","id":"x"}"""u8.ToArray(), "application/fhir+json"), Hostile: false),
            new("a Bundle whose Observation has a string value", () => Bytes("""{"resourceType":"Bundle","type":"collection","entry":[{"resource":{"resourceType":"Observation","status":"final","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]},"valueString":"high"}}]}"""u8.ToArray(), "application/fhir+json"), Hostile: false),
        ];
    }

    [Fact]
    public async Task Hostile_bodies_at_every_endpoint_get_4xx_and_the_node_keeps_serving()
    {
        using var http = node.Client();
        var failures = new List<string>();
        var sent = 0;
        foreach (var body in Bodies())
        {
            foreach (var (method, path) in Endpoints.Concat(Endpoints.Where(e => e.Method != "POST").Select(e => ("POST", e.Path))).Distinct())
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), path) { Content = body.Content() };
                if (body.Header is { } h)
                {
                    request.Headers.TryAddWithoutValidation(h.Header, h.Value);
                }
                sent++;
                try
                {
                    using var response = await http.SendAsync(request);
                    var status = (int)response.StatusCode;
                    // A GET that ignores its body may answer 200, and so does the Prometheus scrape, which takes any method;
                    // whatever takes a body must refuse these with a 4xx.
                    var mustRefuse = body.Hostile && method != "GET" && path != "/metrics";
                    if (status >= 500 || (mustRefuse && status is < 400 or >= 500))
                    {
                        var text = await response.Content.ReadAsStringAsync();
                        failures.Add($"{body.Name} -> {method} {path}: {status} {text[..Math.Min(200, text.Length)]}");
                    }
                }
                catch (HttpRequestException e)
                {
                    failures.Add($"{body.Name} -> {method} {path}: connection failed ({e.Message})");
                }
            }
        }
        Assert.True(failures.Count == 0, $"{failures.Count} of {sent} answers were not 4xx:\n" + string.Join('\n', failures));
        await node.AssertServingAsync();
    }
}
