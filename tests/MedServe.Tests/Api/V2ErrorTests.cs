using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>Every bad input gets its documented V2 error, and the node stays healthy afterwards.</summary>
[Collection(NodeCollection.Name)]
public sealed class V2ErrorTests(NodeFixture node)
{
    private static object Row(int count, string datatype = "FP32", string name = "input", int[]? shape = null) => new
    {
        inputs = new[] { new { name, datatype, shape = shape ?? [1, 30], data = Enumerable.Repeat(1.0, count).ToArray() } },
    };

    public static TheoryData<string, object, int, string> BadRequests => new()
    {
        { "wrong shape", Row(29, shape: [1, 29]), 400, "must have shape [-1,30]" },
        { "wrong rank", Row(30, shape: [30]), 400, "rank 2" },
        { "wrong datatype", Row(30, "FP64"), 400, "must be FP32, got FP64" },
        { "unknown datatype", Row(30, "FLOAT"), 400, "'datatype' must be one of" },
        { "data shorter than shape", Row(29), 400, "data has 29 elements but shape [1,30] needs 30" },
        { "data longer than shape", Row(31), 400, "more elements than its shape allows" },
        { "unknown input name", Row(30, name: "features"), 400, "inputs[0] is not an input of breast-cancer-logreg; it takes 'input'" },
        { "no inputs", new { inputs = Array.Empty<object>() }, 400, "'inputs' is empty" },
        { "unknown output", new { inputs = ((dynamic)Row(30)).inputs, outputs = new[] { new { name = "risk" } } }, 400, "outputs[0] is not an output of breast-cancer-logreg; it gives" },
        { "string in data", new { inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 2 }, data = new object[] { 1, "x" } } } }, 400, "element 1 is not a valid FP32 value" },
        { "negative dimension", Row(30, shape: [-1, 30]), 400, "shape dimension 0 must be a positive integer" },
    };

    [Theory]
    [MemberData(nameof(BadRequests))]
    public async Task Bad_input_gets_a_400_naming_the_problem_and_the_node_stays_healthy(string what, object request, int expectedStatus, string expectedMessage)
    {
        var (status, body) = await node.PostJsonAsync("/v2/models/breast-cancer-logreg/infer", request);
        Assert.True(expectedStatus == status, $"{what}: {status} {body}");
        Assert.Contains(expectedMessage, body!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        await node.AssertHealthyAsync();
    }

    [Fact]
    public async Task NaN_is_refused_where_the_model_cannot_take_it()
    {
        var (status, body) = await node.PostRawAsync("/v2/models/breast-cancer-logreg/infer",
            """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,30],"data":[1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,1,"NaN",1,1]}]}""");
        Assert.Equal(400, status);
        Assert.Contains("NaN or infinite value at element 27", body!["error"]!.GetValue<string>(), StringComparison.Ordinal);

        // A bare NaN is not JSON at all.
        var (rawStatus, rawBody) = await node.PostRawAsync("/v2/models/breast-cancer-logreg/infer",
            """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,1],"data":[NaN]}]}""");
        Assert.Equal(400, rawStatus);
        Assert.Contains("not valid JSON", rawBody!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        await node.AssertHealthyAsync();
    }

    [Fact]
    public async Task NaN_passes_where_the_manifest_allows_it()
    {
        var io = new OnnxBuilder.Io("x", TensorDatatype.FP32, [null, 2]);
        var (uploaded, body) = await node.UploadAsync(Manifests.Identity("nan-echo", "1", [io], allowNonFinite: true), OnnxBuilder.Identity(io));
        Assert.True(uploaded == 201, body?.ToJsonString());
        await node.DeployAsync("nan-echo", "1");
        var (status, result) = await node.PostRawAsync("/v2/models/nan-echo/infer",
            """{"inputs":[{"name":"x","datatype":"FP32","shape":[1,2],"data":["NaN","-Infinity"]}]}""");
        Assert.Equal(200, status);
        Assert.Equal("NaN", result!["outputs"]![0]!["data"]![0]!.GetValue<string>());
        Assert.Equal("-Infinity", result["outputs"]![0]!["data"]![1]!.GetValue<string>());
    }

    [Theory]
    [InlineData("{\"inputs\": [", "not valid JSON")]
    [InlineData("[1,2,3]", "must be a JSON object")]
    [InlineData("{\"inputs\": {}}", "'inputs' must be an array")]
    [InlineData("", "not valid JSON")]
    public async Task Malformed_json_gets_400(string body, string expected)
    {
        var (status, error) = await node.PostRawAsync("/v2/models/breast-cancer-logreg/infer", body);
        Assert.Equal(400, status);
        Assert.Contains(expected, error!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        await node.AssertHealthyAsync();
    }

    [Theory]
    [InlineData("/v2/models/no-such-model/infer", "unknown model 'no-such-model'")]
    [InlineData("/v2/models/breast-cancer-logreg/versions/7/infer", "has no version '7'")]
    [InlineData("/v2/models/Bad..Name!/infer", "unknown model")]
    public async Task Unknown_model_or_version_gets_404(string path, string expected)
    {
        var (status, body) = await node.PostJsonAsync(path, Row(30));
        Assert.Equal(404, status);
        Assert.Contains(expected, body!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        Assert.Equal(404, (await node.GetJsonAsync(path.Replace("/infer", "", StringComparison.Ordinal))).Status);
        Assert.Equal(404, (await node.GetJsonAsync(path.Replace("/infer", "/ready", StringComparison.Ordinal))).Status);
    }

    [Theory]
    [InlineData(100, 30 * 4, "binary data is truncated")]
    [InlineData(2, 30 * 4, "binary data is truncated")]
    [InlineData(30 * 4 + 8, 30 * 4, "binary_data_size add up to 120")]
    [InlineData(30 * 4, 29 * 4, "binary_data_size is 116 bytes but shape [1,30] of FP32 needs 120")]
    public async Task Truncated_or_inconsistent_binary_body_gets_400(int binaryBytes, int declaredSize, string expected)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, parameters = new { binary_data_size = declaredSize } } },
        });
        var body = new byte[header.Length + binaryBytes];
        header.CopyTo(body, 0);
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await node.Http.PostAsync("/v2/models/breast-cancer-logreg/infer", content);
        var error = await NodeFixture.ReadJsonAsync(response);
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Contains(expected, error!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        await node.AssertHealthyAsync();
    }

    [Fact]
    public async Task Header_length_beyond_the_body_gets_400()
    {
        using var content = new StringContent("{}", Encoding.UTF8, "application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", "500");
        using var response = await node.Http.PostAsync("/v2/models/breast-cancer-logreg/infer", content);
        Assert.Equal(400, (int)response.StatusCode);
        Assert.Contains("Inference-Header-Content-Length is 500", (await NodeFixture.ReadJsonAsync(response))!["error"]!.GetValue<string>(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_body_over_the_size_limit_gets_413(bool chunked)
    {
        var big = new byte[NodeFixture.MaxInferBytes + 1024];
        big.AsSpan().Fill((byte)' ');
        HttpContent content = chunked ? new StreamContent(new MemoryStream(big)) : new ByteArrayContent(big);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        if (chunked)
        {
            content.Headers.ContentLength = null;
        }
        using var request = new HttpRequestMessage(HttpMethod.Post, "/v2/models/ct-mr-classifier/infer") { Content = content };
        if (chunked)
        {
            request.Headers.TransferEncodingChunked = true;
        }
        using var response = await node.Http.SendAsync(request);
        Assert.Equal(413, (int)response.StatusCode);
        Assert.Contains("limit", (await NodeFixture.ReadJsonAsync(response))!["error"]!.GetValue<string>(), StringComparison.Ordinal);
        await node.AssertHealthyAsync();
    }

    [Fact]
    public async Task A_runtime_failure_is_a_503_with_Retry_After_and_an_input_the_graph_refuses_stays_a_400()
    {
        // ConstantOfShape: the input's values are the output's shape. [2^30, 2^30] floats (4 EiB) run ONNX Runtime out
        // of memory: not the input's type or shape, and the same model serves the next request.
        var (zeros, zerosBody) = await node.UploadAsync(Manifests.Single("zeros", "1",
            ("shape", TensorDatatype.INT64, [2], [2], [1, 2]), ("zeros", TensorDatatype.FP32, [-1, -1], [1, 2], [0, 0])), OnnxBuilder.Zeros());
        Assert.True(zeros == 201, zerosBody?.ToJsonString());
        await node.DeployAsync("zeros", "1");
        using var oom = await node.Http.PostAsync("/v2/models/zeros/infer", new StringContent(
            """{"inputs":[{"name":"shape","datatype":"INT64","shape":[2],"data":[1073741824,1073741824]}]}""", Encoding.UTF8, "application/json"));
        var error = (await NodeFixture.ReadJsonAsync(oom))!["error"]!.GetValue<string>();
        Assert.Equal(503, (int)oom.StatusCode);
        Assert.Equal("1", oom.Headers.GetValues("Retry-After").Single());
        Assert.Equal("zeros:1 could not run the request just now (ONNX Runtime Fail: out of memory); the input is not at fault", error);
        var (served, body) = await node.PostRawAsync("/v2/models/zeros/infer", """{"inputs":[{"name":"shape","datatype":"INT64","shape":[2],"data":[2,3]}]}""");
        Assert.True(served == 200, body?.ToJsonString());
        Assert.Equal([2, 3], body!["outputs"]![0]!["shape"]!.AsArray().Select(d => d!.GetValue<int>()).ToArray());

        // Reshape to [-1, 3]: 4 values do not fit. ONNX Runtime calls it Fail too, but it is the input's fault: 400.
        var (reshape, reshapeBody) = await node.UploadAsync(Manifests.Single("reshape-3", "1",
            ("x", TensorDatatype.FP32, [-1], [3], [1, 2, 3]), ("y", TensorDatatype.FP32, [-1, 3], [1, 3], [1, 2, 3])), OnnxBuilder.Reshape(3));
        Assert.True(reshape == 201, reshapeBody?.ToJsonString());
        await node.DeployAsync("reshape-3", "1");
        var (refused, refusal) = await node.PostRawAsync("/v2/models/reshape-3/infer", """{"inputs":[{"name":"x","datatype":"FP32","shape":[4],"data":[1,2,3,4]}]}""");
        Assert.Equal(400, refused);
        Assert.Equal("reshape-3:1 rejected the input values (ONNX Runtime Fail)", refusal!["error"]!.GetValue<string>());
        await node.AssertHealthyAsync();
    }
}
