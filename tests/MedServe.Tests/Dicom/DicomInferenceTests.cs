using System.Buffers.Binary;
using System.Net;
using System.Net.Http.Headers;
using System.Net.Http.Json;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Dashboard.Security;
using MedServe.Tests.Support;
using Microsoft.Extensions.DependencyInjection;

namespace MedServe.Tests.Dicom;

/// <summary>
/// DICOM on the V2 infer endpoint of the real node, through the real sample models: for every file of
/// <c>data/dicom</c> the DICOM path answers with the same logits as the tensor the training pipeline made of it sent
/// over V2 binary; a multi-frame file and a series answer one row per frame or slice in instance order; the bone
/// segmenter takes CT at 256x256; bad bodies get 4xx naming the problem and the node keeps serving.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class DicomInferenceTests(NodeFixture node)
{
    /// <summary>A copy of ct-mr-classifier whose schema also accepts NM (JPEG2000.dcm is nuclear medicine).</summary>
    private const string AnyModality = "dicom-ct-mr-nm";

    private static ByteArrayContent Dicom(byte[] file)
    {
        var content = new ByteArrayContent(file);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/dicom");
        return content;
    }

    private static ByteArrayContent Series(IEnumerable<byte[]> files, string boundary = "medserve-series-7f3a")
    {
        var body = new MemoryStream();
        foreach (var file in files)
        {
            body.Write(Encoding.ASCII.GetBytes($"--{boundary}\r\nContent-Type: application/dicom\r\n\r\n"));
            body.Write(file);
            body.Write("\r\n"u8);
        }
        body.Write(Encoding.ASCII.GetBytes($"--{boundary}--\r\n"));
        var content = new ByteArrayContent(body.ToArray());
        content.Headers.TryAddWithoutValidation("Content-Type", $"multipart/related; type=\"application/dicom\"; boundary={boundary}");
        return content;
    }

    private async Task<(int Status, JsonNode? Body, HttpResponseHeaders Headers)> PostAsync(string model, HttpContent content)
    {
        using var response = await node.Http.PostAsync($"/v2/models/{model}/infer", content);
        return ((int)response.StatusCode, await NodeFixture.ReadJsonAsync(response), response.Headers);
    }

    private static float[] Output(JsonNode body, string name) =>
        body["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == name)!["data"]!.AsArray().Select(v => v!.GetValue<float>()).ToArray();

    /// <summary>The V2 binary answer for a float tensor.</summary>
    private async Task<JsonNode> TensorAsync(string model, long[] shape, float[] data)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            inputs = new[] { new { name = "image", datatype = "FP32", shape, parameters = new { binary_data_size = data.Length * 4 } } },
        });
        using var content = new ByteArrayContent([.. header, .. MemoryMarshal.AsBytes(data.AsSpan())]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        return await NodeFixture.SuccessJsonAsync(node.Http.PostAsync($"/v2/models/{model}/infer", content));
    }

    private static void AssertClose(float[] expected, float[] actual, double tolerance, string what)
    {
        Assert.Equal(expected.Length, actual.Length);
        var worst = expected.Zip(actual, (a, b) => Math.Abs(a - b)).Max();
        Assert.True(worst <= tolerance, $"{what}: largest difference {worst:g3}");
    }

    private async Task EnsureAnyModalityModelAsync()
    {
        if ((await node.GetJsonAsync($"/v2/models/{AnyModality}/ready")).Status == 200)
        {
            return;
        }
        var manifest = JsonNode.Parse(File.ReadAllText(Path.Combine(Paths.Samples, "ct-mr-classifier", "manifest.json")))!;
        manifest["name"] = AnyModality;
        manifest["inputs"]![0]!["image"]!["modalities"] = new JsonArray("CT", "MR", "NM");
        var (status, body) = await node.UploadAsync(manifest, File.ReadAllBytes(Path.Combine(Paths.Samples, "ct-mr-classifier", "model.onnx")));
        Assert.True(status is 201 or 409, $"{status}: {body}");
        await node.DeployAsync(AnyModality, "1");
    }

    public static TheoryData<string> ReferenceFiles => new(DicomTestFiles.WithReference);

    [Theory]
    [MemberData(nameof(ReferenceFiles))]
    public async Task Each_file_over_DICOM_gets_the_logits_of_its_reference_tensor_over_V2(string file)
    {
        // The sample classifier takes CT and MR; JPEG2000.dcm (NM) goes to a copy that accepts NM too.
        var model = DicomTestFiles.Index[file]!["modality"]!.GetValue<string>() is "CT" or "MR" ? "ct-mr-classifier" : AnyModality;
        if (model == AnyModality)
        {
            await EnsureAnyModalityModelAsync();
        }
        var (status, body, _) = await PostAsync(model, Dicom(DicomTestFiles.Bytes(file)));
        Assert.True(status == 200, $"{file}: {status} {body}");
        var output = body!["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "logits")!;
        Assert.Equal([1L, 2], output["shape"]!.AsArray().Select(v => v!.GetValue<long>()));
        var viaTensor = await TensorAsync(model, DicomTestFiles.ReferenceShape(file), DicomTestFiles.Reference(file));
        // Logits, not probabilities: the probabilities sit near 0 or 1 and would hide a skewed input.
        AssertClose(Output(viaTensor, "logits"), Output(body, "logits"), 1e-4, file);
        Assert.Equal(model, body["model_name"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_multi_frame_file_answers_one_row_per_frame()
    {
        var (status, body, _) = await PostAsync("ct-mr-classifier/versions/1", Dicom(DicomTestFiles.MultiFrameMr(3)));
        Assert.True(status == 200, $"{status} {body}");
        var reference = DicomTestFiles.Reference("MR_small.dcm");
        float[] stacked = [.. reference, .. DicomTestFiles.Plus(reference, 10), .. DicomTestFiles.Plus(reference, 20)];
        var expected = await TensorAsync("ct-mr-classifier", [3, 1, 64, 64], stacked);
        AssertClose(Output(expected, "logits"), Output(body!, "logits"), 1e-4, "3 frames");
        Assert.Equal(6, Output(body!, "probabilities").Length);
    }

    [Fact]
    public async Task A_series_answers_one_row_per_slice_in_instance_order()
    {
        // Sent as instances 2, 3, 1 (pixels raised by 100 x instance, so each row is told apart).
        var (status, body, headers) = await PostAsync("ct-mr-classifier", Series([DicomTestFiles.MrSlice(200, 2), DicomTestFiles.MrSlice(300, 3), DicomTestFiles.MrSlice(100, 1)]));
        Assert.True(status == 200, $"{status} {body}");
        Assert.Equal("3,1,2", headers.GetValues("Dicom-Row-Parts").Single());
        var reference = DicomTestFiles.Reference("MR_small.dcm");
        float[] inOrder = [.. DicomTestFiles.Plus(reference, 100), .. DicomTestFiles.Plus(reference, 200), .. DicomTestFiles.Plus(reference, 300)];
        var expected = await TensorAsync("ct-mr-classifier", [3, 1, 64, 64], inOrder);
        AssertClose(Output(expected, "logits"), Output(body!, "logits"), 1e-4, "series");
    }

    [Fact]
    public async Task The_bone_segmenter_takes_a_CT_slice_at_256x256_in_Hounsfield_units()
    {
        var (status, body, _) = await PostAsync("ct-bone-segmenter", Dicom(DicomTestFiles.Bytes("CT_small.dcm")));
        Assert.True(status == 200, $"{status} {body}");
        var mask = body!["outputs"]![0]!;
        Assert.Equal([1L, 1, 256, 256], mask["shape"]!.AsArray().Select(v => v!.GetValue<long>()));
        // The test's own preprocessing, straight from the file's raw pixels: HU = stored * slope + intercept, then the
        // 128 -> 256 upscale (antialiasing changes nothing when upscaling: bilinear between pixel centres, edges held).
        var editor = DicomTestFiles.Editor.Open("CT_small.dcm");
        var slope = double.Parse(editor.Text(0x0028, 0x1053)!, System.Globalization.CultureInfo.InvariantCulture);
        var intercept = double.Parse(editor.Text(0x0028, 0x1052)!, System.Globalization.CultureInfo.InvariantCulture);
        var hu = editor.PixelsInt16.Select(p => p * slope + intercept).ToArray();
        var expectedInput = new float[256 * 256];
        for (var y = 0; y < 256; y++)
        {
            for (var x = 0; x < 256; x++)
            {
                var sy = Math.Clamp((y + 0.5) / 2 - 0.5, 0, 127);
                var sx = Math.Clamp((x + 0.5) / 2 - 0.5, 0, 127);
                int y0 = (int)sy, x0 = (int)sx, y1 = Math.Min(y0 + 1, 127), x1 = Math.Min(x0 + 1, 127);
                double fy = sy - y0, fx = sx - x0;
                expectedInput[y * 256 + x] = (float)((1 - fy) * ((1 - fx) * hu[y0 * 128 + x0] + fx * hu[y0 * 128 + x1])
                    + fy * ((1 - fx) * hu[y1 * 128 + x0] + fx * hu[y1 * 128 + x1]));
            }
        }
        var expected = await TensorAsync("ct-bone-segmenter", [1, 1, 256, 256], expectedInput);
        AssertClose(Output(expected, "mask"), Output(body, "mask"), 1e-4, "mask");
        Assert.Contains(Output(body, "mask"), p => p > 0.5f); // the skull is in the slice
    }

    public static TheoryData<string, string, string, int, string> BadRequests => new()
    {
        // what, model, content kind, status, what the message names
        { "MR_truncated.dcm", "ct-mr-classifier", "file", 400, "truncated" },
        { "badVR.dcm", "ct-mr-classifier", "file", 400, "Number of Frames (0028,0008)" },
        { "a text file", "ct-mr-classifier", "file", 400, "not a DICOM Part 10 file" },
        { "zero bytes", "ct-mr-classifier", "file", 400, "empty" },
        { "SC_rgb_small_odd.dcm", "ct-mr-classifier", "file", 400, "modality OT" },
        { "JPEG2000.dcm", "ct-mr-classifier", "file", 400, "modality NM (0008,0060) is not accepted by ct-mr-classifier:1, which accepts CT, MR" },
        { "MR_small.dcm", "ct-bone-segmenter", "file", 400, "modality MR (0008,0060) is not accepted by ct-bone-segmenter:1, which accepts CT" },
        { "MR_small.dcm", "diabetes-linear", "file", 415, "diabetes-linear:1 does not take DICOM" },
        { "MPEG2", "ct-mr-classifier", "file", 415, "transfer syntax 1.2.840.10008.1.2.4.100 (MPEG2 Main Profile / Main Level) is not supported" },
        { "huge dimensions", "ct-mr-classifier", "file", 413, "MedServe:Limits:MaxDicomPixelBytes" },
        { "a series without type", "ct-mr-classifier", "untyped", 415, "type=\"application/dicom\"" },
        { "a series that never ends", "ct-mr-classifier", "unterminated", 400, "multipart/related body is malformed" },
        { "a series with a JSON part", "ct-mr-classifier", "json-part", 415, "part 2 is not application/dicom" },
        { "a series with a truncated file", "ct-mr-classifier", "series-truncated", 400, "part 2: the DICOM file is truncated" },
        { "MR_small.dcm", "no-such-model", "file", 404, "unknown model" },
    };

    private static HttpContent BadContent(string what, string kind)
    {
        var mr = DicomTestFiles.Bytes("MR_small.dcm");
        byte[] file = what switch
        {
            "a text file" => "patient Lastname^Firstname\n"u8.ToArray(),
            "zero bytes" => [],
            "MPEG2" => DicomTestFiles.Editor.Open("MR_small.dcm").Write("1.2.840.10008.1.2.4.100"),
            "huge dimensions" => DicomTestFiles.Editor.Open("MR_small.dcm").SetUs(0x0028, 0x0010, 65535).SetUs(0x0028, 0x0011, 65535).Set(0x0028, 0x0008, "IS", "65535").Write(),
            _ when what.EndsWith(".dcm", StringComparison.Ordinal) => DicomTestFiles.Bytes(what),
            _ => mr,
        };
        switch (kind)
        {
            case "untyped":
                var untyped = new ByteArrayContent([.. "--b\r\nContent-Type: application/dicom\r\n\r\n"u8, .. mr, .. "\r\n--b--\r\n"u8]);
                untyped.Headers.TryAddWithoutValidation("Content-Type", "multipart/related; boundary=b");
                return untyped;
            case "unterminated":
                var open = new ByteArrayContent([.. "--b\r\nContent-Type: application/dicom\r\n\r\n"u8, .. mr]);
                open.Headers.TryAddWithoutValidation("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=b");
                return open;
            case "json-part":
                var json = new ByteArrayContent([.. "--b\r\nContent-Type: application/dicom\r\n\r\n"u8, .. mr, .. "\r\n--b\r\nContent-Type: application/json\r\n\r\n{}\r\n--b--\r\n"u8]);
                json.Headers.TryAddWithoutValidation("Content-Type", "multipart/related; type=\"application/dicom\"; boundary=b");
                return json;
            case "series-truncated":
                return Series([mr, DicomTestFiles.Bytes("MR_truncated.dcm")]);
            default:
                return Dicom(file);
        }
    }

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task A_bad_DICOM_request_gets_its_4xx_naming_the_problem_and_the_node_keeps_serving(string what, string model, string kind, int expected, string names)
    {
        var (status, body, _) = await PostAsync(model, BadContent(what, kind));
        var error = body?["error"]?.GetValue<string>() ?? "";
        Assert.True(status == expected, $"{what} -> {model}: {status} {body}");
        Assert.Contains(names, error, StringComparison.Ordinal);
        foreach (var value in DicomPreprocessingTests.PatientValues)
        {
            Assert.DoesNotContain(value, error, StringComparison.Ordinal);
        }
        await node.AssertHealthyAsync();
        var (okStatus, okBody, _) = await PostAsync("ct-mr-classifier", Dicom(DicomTestFiles.Bytes("MR_small_RLE.dcm")));
        Assert.True(okStatus == 200, $"after {what}: {okStatus} {okBody}");
    }

    [Fact]
    public async Task DICOM_inference_needs_the_infer_permission_and_is_audited_by_the_hash_of_its_body()
    {
        var file = DicomTestFiles.Bytes("MR_small_implicit.dcm");
        var viewer = await NodeFixture.SuccessJsonAsync(node.Http.PostAsJsonAsync("/api/keys", new { name = "dicom viewer", role = "viewer" }));
        using (var http = new HttpClient { BaseAddress = node.Http.BaseAddress })
        {
            using var anonymous = await http.PostAsync("/v2/models/ct-mr-classifier/infer", Dicom(file));
            Assert.Equal(HttpStatusCode.Unauthorized, anonymous.StatusCode);
            http.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", viewer["key"]!.GetValue<string>());
            using var forbidden = await http.PostAsync("/v2/models/ct-mr-classifier/infer", Dicom(file));
            Assert.Equal(HttpStatusCode.Forbidden, forbidden.StatusCode);
        }
        var (status, body, _) = await PostAsync("ct-mr-classifier", Dicom(file));
        Assert.True(status == 200, $"{status} {body}");
        await node.Services.GetRequiredService<AuditWriter>().FlushAsync();
        var hash = AuditChain.InputHash(file);
        var trail = await node.Http.GetStringAsync("/api/audit?format=jsonl&model=ct-mr-classifier");
        var record = trail.Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => JsonNode.Parse(l)!["event"]!)
            .Last(e => e["input_sha256"]?.GetValue<string>() == hash);
        Assert.Equal(AuditActions.Infer, record["action"]!.GetValue<string>());
        Assert.Equal("ok", record["outcome"]!.GetValue<string>());
        Assert.Equal("1", record["version"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_DICOM_body_has_its_own_larger_limit()
    {
        // Over the node's V2 limit (4 MiB, --max-infer-bytes) but under MedServe:Limits:MaxDicomBytes (256 MiB): the file
        // is read, and refused for what it is (a 5 MiB preamble of zeros is no Part 10 file), not for its size.
        var big = new byte[NodeFixture.MaxInferBytes + (1 << 20)];
        var (status, body, _) = await PostAsync("ct-mr-classifier", Dicom(big));
        Assert.True(status == 400, $"{status} {body}");
        Assert.Contains("not a DICOM Part 10 file", body!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        // The same bytes as JSON are over the V2 limit.
        using var json = new ByteArrayContent(big);
        json.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await node.Http.PostAsync("/v2/models/ct-mr-classifier/infer", json);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, response.StatusCode);
    }
}
