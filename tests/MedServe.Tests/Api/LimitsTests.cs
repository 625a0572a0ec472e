using System.IO.Compression;
using System.Net.Http.Headers;
using System.Text;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>A node with small size limits and no rate limits (sizes here; the fuzz in <see cref="FuzzTests"/>).</summary>
public sealed class SmallLimitsNode : LimitedNode
{
    public const int MaxInferBytes = 64 * 1024;
    public const int MaxTensorElements = 1000;
    public const int MaxJobItems = 3;
    public const int MaxJobBytes = 8192;
    public const int MaxRequestBytes = 2048;
    public const int MaxUploadBytes = 1024 * 1024;
    public const int MaxPackageBytes = 64 * 1024 * 1024;

    protected override string[] Settings =>
    [
        "--max-infer-bytes", $"{MaxInferBytes}",
        "--MedServe:Limits:MaxTensorElements", $"{MaxTensorElements}",
        "--MedServe:Limits:MaxJobItems", $"{MaxJobItems}",
        "--MedServe:Limits:MaxJobBytes", $"{MaxJobBytes}",
        "--MedServe:Limits:MaxRequestBytes", $"{MaxRequestBytes}",
        "--MedServe:Limits:MaxPackageBytes", $"{MaxPackageBytes}",
        "--MedServe:Management:MaxUploadBytes", $"{MaxUploadBytes}",
        "--MedServe:Limits:InferPerSecond", "0",
        "--MedServe:Limits:ManagementPerSecond", "0",
    ];
}

/// <summary>A node whose keys may send 5 requests a second (V2 and management each).</summary>
public sealed class TinyRateNode : LimitedNode
{
    protected override string[] Settings =>
    [
        "--MedServe:Limits:InferPerSecond", "5",
        "--MedServe:Limits:ManagementPerSecond", "5",
    ];
}

/// <summary>Each size limit answers 413 with a message naming what is too large, the limit and its setting.</summary>
public sealed class LimitsTests(SmallLimitsNode node) : IClassFixture<SmallLimitsNode>
{
    private static StringContent Json(string json) => new(json, Encoding.UTF8, "application/json");

    private static async Task<string> ErrorOf(HttpResponseMessage response)
    {
        var body = await NodeFixture.ReadJsonAsync(response);
        return (body?["error"] ?? body?["detail"])?.GetValue<string>() ?? "";
    }

    private async Task AssertTooLarge(HttpResponseMessage response, params string[] mentions)
    {
        var text = await ErrorOf(response);
        Assert.True(413 == (int)response.StatusCode, $"{(int)response.StatusCode}: {text}");
        foreach (var m in mentions)
        {
            Assert.Contains(m, text, StringComparison.Ordinal);
        }
        await node.AssertServingAsync();
    }

    [Theory]
    [InlineData("/v2/models/diabetes-linear/infer", "application/json", "\"error\":\"the request body could not be read")]
    [InlineData("/v2/models/diabetes-linear/records", "text/csv", null)]
    [InlineData("/fhir/models/diabetes-linear/$predict", "application/fhir+json", null)]
    public async Task A_body_whose_chunked_framing_is_broken_is_a_400_not_a_500(string path, string contentType, string? says)
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(node.BaseAddress.Host, node.BaseAddress.Port);
        await using var stream = tcp.GetStream();
        var request = $"POST {path} HTTP/1.1\r\n"
            + $"Host: {node.BaseAddress.Authority}\r\nAuthorization: Bearer {NodeFixture.AdminKey}\r\n"
            + $"Content-Type: {contentType}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + "5\r\n{\"inp\r\nZZ\r\nnot a chunk\r\n0\r\n\r\n";
        await stream.WriteAsync(Encoding.ASCII.GetBytes(request));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var answer = await reader.ReadToEndAsync();
        Assert.StartsWith("HTTP/1.1 400", answer, StringComparison.Ordinal);
        if (says is not null)
        {
            Assert.Contains(says, answer, StringComparison.Ordinal);
        }
        await node.AssertServingAsync();
    }

    [Fact]
    public async Task A_tensor_name_with_invalid_utf8_is_a_400_naming_the_problem()
    {
        using var http = node.Client();
        var head = Encoding.UTF8.GetBytes("""{"inputs":[{"name":"in""");
        var tail = Encoding.UTF8.GetBytes("""put","datatype":"FP32","shape":[1,10],"data":[61,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""");
        using var content = new ByteArrayContent([.. head, 0xff, 0xfe, .. tail]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var response = await http.PostAsync("/v2/models/diabetes-linear/infer", content);
        var error = await ErrorOf(response);
        Assert.True(400 == (int)response.StatusCode, $"{(int)response.StatusCode}: {error}");
        Assert.Contains("not valid UTF-8", error, StringComparison.Ordinal);
        Assert.DoesNotContain('\ufffd', error);
        await node.AssertServingAsync();
    }

    [Fact]
    public async Task Tensor_elements_over_the_limit_get_413_naming_the_input_and_the_limit()
    {
        using var http = node.Client();
        using var response = await http.PostAsync("/v2/models/diabetes-linear/infer",
            Json("""{"inputs":[{"name":"input","datatype":"FP32","shape":[1000000,10],"data":[1]}]}"""));
        await AssertTooLarge(response, "inputs[0]", $"the limit is {SmallLimitsNode.MaxTensorElements}", "MaxTensorElements");
    }

    [Fact]
    public async Task An_infer_body_over_max_infer_bytes_gets_413_naming_the_setting()
    {
        using var http = node.Client();
        using var response = await http.PostAsync("/v2/models/diabetes-linear/infer", Json(new string(' ', SmallLimitsNode.MaxInferBytes + 1)));
        await AssertTooLarge(response, $"{SmallLimitsNode.MaxInferBytes}", "--max-infer-bytes");
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_management_body_over_max_request_bytes_gets_413_problem_json(bool chunked)
    {
        using var http = node.Client();
        var json = $$"""{"replicas": 1, "pad": "{{new string('x', SmallLimitsNode.MaxRequestBytes)}}"}""";
        HttpContent content = chunked ? new StreamContent(new MemoryStream(Encoding.UTF8.GetBytes(json))) : Json(json);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        using var request = new HttpRequestMessage(HttpMethod.Put, "/api/deployments/diabetes-linear/1") { Content = content };
        request.Headers.TransferEncodingChunked = chunked;
        using var response = await http.SendAsync(request);
        Assert.Equal("application/problem+json", response.Content.Headers.ContentType?.MediaType);
        await AssertTooLarge(response, $"{SmallLimitsNode.MaxRequestBytes}", "MedServe:Limits:MaxRequestBytes");
    }

    [Fact]
    public async Task An_upload_over_max_upload_bytes_gets_413()
    {
        using var http = node.Client();
        using var content = new ByteArrayContent(new byte[SmallLimitsNode.MaxUploadBytes + 1]);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        using var response = await http.PostAsync("/api/models", content);
        await AssertTooLarge(response, $"{SmallLimitsNode.MaxUploadBytes}", "MaxUploadBytes");
    }

    [Fact]
    public async Task A_zip_that_declares_more_than_max_package_bytes_gets_413_before_it_is_unpacked()
    {
        using var http = node.Client();
        var manifest = await File.ReadAllBytesAsync(Path.Combine(Paths.Samples, "diabetes-linear", "manifest.json"));
        using var content = new ByteArrayContent(ZipOfZeros(("manifest.json", manifest), ("model.onnx", SmallLimitsNode.MaxPackageBytes + 1)));
        content.Headers.ContentType = new MediaTypeHeaderValue("application/zip");
        using var response = await http.PostAsync("/api/models", content);
        await AssertTooLarge(response, "unpacks to", "MaxPackageBytes");
    }

    [Fact]
    public async Task A_job_over_max_job_bytes_gets_413()
    {
        using var http = node.Client();
        using var content = new StringContent("id,age\n" + string.Concat(Enumerable.Repeat("1,2\n", SmallLimitsNode.MaxJobBytes)), Encoding.UTF8, "text/csv");
        using var response = await http.PostAsync("/api/jobs?model=diabetes-linear", content);
        await AssertTooLarge(response, $"{SmallLimitsNode.MaxJobBytes}", "MaxJobBytes");
    }

    [Fact]
    public async Task A_job_over_max_job_items_gets_413_saying_to_split_it()
    {
        using var http = node.Client();
        var item = """{"inputs":[{"name":"input","datatype":"FP32","shape":[1,10],"data":[61,1,25.8,90,280,195.4,55,5,4.9972,90]}]}""";
        var items = string.Join(',', Enumerable.Repeat(item, SmallLimitsNode.MaxJobItems + 1));
        using var response = await http.PostAsync("/api/jobs", Json($$"""{"model":"diabetes-linear","items":[{{items}}]}"""));
        await AssertTooLarge(response, $"has {SmallLimitsNode.MaxJobItems + 1} items", $"the limit is {SmallLimitsNode.MaxJobItems}", "MaxJobItems", "split");
    }

    [Fact]
    public async Task A_job_item_over_the_tensor_element_limit_gets_413_naming_the_item()
    {
        using var http = node.Client();
        using var response = await http.PostAsync("/api/jobs",
            Json("""{"model":"diabetes-linear","items":[{"id":"big","inputs":[{"name":"input","datatype":"FP32","shape":[100000,10],"data":[1]}]}]}"""));
        await AssertTooLarge(response, "items[0]: inputs[0]", "MaxTensorElements");
    }

    /// <summary>A zip of entries: given bytes, or that many zero bytes (a few hundred kilobytes that unpack to the size given).</summary>
    public static byte[] ZipOfZeros(params (string Name, object Content)[] entries)
    {
        using var buffer = new MemoryStream();
        using (var zip = new ZipArchive(buffer, ZipArchiveMode.Create, leaveOpen: true))
        {
            var zeros = new byte[1 << 20];
            foreach (var (name, content) in entries)
            {
                using var stream = zip.CreateEntry(name, CompressionLevel.Optimal).Open();
                if (content is byte[] bytes)
                {
                    stream.Write(bytes);
                    continue;
                }
                for (long left = Convert.ToInt64(content, System.Globalization.CultureInfo.InvariantCulture); left > 0; left -= zeros.Length)
                {
                    stream.Write(zeros, 0, (int)Math.Min(left, zeros.Length));
                }
            }
        }
        return buffer.ToArray();
    }
}

/// <summary>A key over its rate gets 429 + Retry-After and a message naming the limit; another key is not held back.</summary>
public sealed class RateLimitTests(TinyRateNode node) : IClassFixture<TinyRateNode>
{
    private static async Task<HttpResponseMessage[]> Burst(HttpClient http, int n, Func<HttpClient, Task<HttpResponseMessage>> call) =>
        await Task.WhenAll(Enumerable.Range(0, n).Select(_ => call(http)));

    [Fact]
    public async Task A_key_over_its_infer_rate_gets_429_while_another_key_is_served()
    {
        var busy = await node.CreateKeyAsync(Roles.Clinician);
        var other = await node.CreateKeyAsync(Roles.Clinician);
        using var http = node.Client(busy);
        var answers = await Burst(http, 60, h => h.PostAsync("/v2/models/diabetes-linear/infer", new StringContent(LimitedNode.GoodInfer, Encoding.UTF8, "application/json")));
        try
        {
            Assert.Contains(answers, a => (int)a.StatusCode == 200);
            Assert.All(answers, a => Assert.True((int)a.StatusCode is 200 or 429, $"{(int)a.StatusCode}"));
            var refused = answers.Where(a => (int)a.StatusCode == 429).ToArray();
            Assert.NotEmpty(refused);
            foreach (var r in refused)
            {
                Assert.True(r.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, "429 without Retry-After");
                var error = (await NodeFixture.ReadJsonAsync(r))!["error"]!.GetValue<string>();
                Assert.Contains("too many requests from key", error, StringComparison.Ordinal);
                Assert.Contains("5 per second", error, StringComparison.Ordinal);
                Assert.Contains("MedServe:Limits:InferPerSecond", error, StringComparison.Ordinal);
            }
        }
        finally
        {
            foreach (var a in answers)
            {
                a.Dispose();
            }
        }
        // The other key has its own budget: served at once, while the busy one is still over its rate.
        using var second = node.Client(other);
        using var served = await second.PostAsync("/v2/models/diabetes-linear/infer", new StringContent(LimitedNode.GoodInfer, Encoding.UTF8, "application/json"));
        Assert.Equal(200, (int)served.StatusCode);
        // Probes are never throttled.
        using var anonymous = node.Client(null);
        var probes = await Burst(anonymous, 30, h => h.GetAsync("/v2/health/live"));
        Assert.All(probes, p => Assert.Equal(200, (int)p.StatusCode));
    }

    [Fact]
    public async Task A_key_over_its_management_rate_gets_429_problem_json_while_another_key_is_served()
    {
        var busy = await node.CreateKeyAsync(Roles.Viewer);
        var other = await node.CreateKeyAsync(Roles.Viewer);
        using var http = node.Client(busy);
        var answers = await Burst(http, 40, h => h.GetAsync("/api/models"));
        var refused = answers.Where(a => (int)a.StatusCode == 429).ToArray();
        Assert.NotEmpty(refused);
        Assert.All(answers, a => Assert.True((int)a.StatusCode is 200 or 429, $"{(int)a.StatusCode}"));
        var first = refused[0];
        Assert.Equal("application/problem+json", first.Content.Headers.ContentType?.MediaType);
        Assert.True(first.Headers.RetryAfter?.Delta is { TotalSeconds: >= 1 }, "429 without Retry-After");
        var problem = (await NodeFixture.ReadJsonAsync(first))!;
        Assert.Equal(429, problem["status"]!.GetValue<int>());
        Assert.Contains("MedServe:Limits:ManagementPerSecond", problem["detail"]!.GetValue<string>(), StringComparison.Ordinal);
        using var second = node.Client(other);
        using var served = await second.GetAsync("/api/models");
        Assert.Equal(200, (int)served.StatusCode);
    }

    [Fact]
    public async Task Callers_without_a_key_share_their_address_budget()
    {
        using var anonymous = node.Client(null);
        var answers = await Burst(anonymous, 40, h => h.GetAsync("/v2"));
        Assert.Contains(answers, a => (int)a.StatusCode == 429 && a.Headers.RetryAfter is not null);
        Assert.All(answers, a => Assert.True((int)a.StatusCode is 401 or 429, $"{(int)a.StatusCode}"));
        var error = (await NodeFixture.ReadJsonAsync(answers.First(a => (int)a.StatusCode == 429)))!["error"]!.GetValue<string>();
        Assert.Contains("this address", error, StringComparison.Ordinal);
    }
}
