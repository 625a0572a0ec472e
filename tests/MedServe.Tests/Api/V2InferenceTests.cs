using System.Buffers.Binary;
using System.Net.Http.Headers;
using System.Runtime.InteropServices;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>The sample medical models over the Open Inference Protocol reproduce their references.</summary>
[Collection(NodeCollection.Name)]
public sealed class V2InferenceTests(NodeFixture node)
{
    [Theory]
    [InlineData("breast-cancer-logreg")]
    [InlineData("breast-cancer-mlp")]
    public async Task Held_out_breast_cancer_rows_reproduce_reference_probabilities_as_nested_json(string model)
    {
        var rows = TestData.BreastCancer();
        Assert.Equal(143, rows.Count);
        var (status, body) = await node.PostJsonAsync($"/v2/models/{model}/infer", new
        {
            id = "bc-143",
            inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { rows.Count, 30 }, data = rows.Select(r => r.Features).ToArray() } },
            outputs = new[] { new { name = "probabilities" } },
        });

        Assert.Equal(200, status);
        Assert.Equal(model, body!["model_name"]!.GetValue<string>());
        Assert.Equal("1", body["model_version"]!.GetValue<string>());
        Assert.Equal("bc-143", body["id"]!.GetValue<string>());
        var outputs = body["outputs"]!.AsArray();
        Assert.Single(outputs); // only the requested output
        Assert.Equal("probabilities", outputs[0]!["name"]!.GetValue<string>());
        Assert.Equal([rows.Count, 2], outputs[0]!["shape"]!.AsArray().Select(d => d!.GetValue<int>()));
        var data = outputs[0]!["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
        for (var i = 0; i < rows.Count; i++)
        {
            var reference = model.EndsWith("logreg", StringComparison.Ordinal) ? rows[i].PBenignLogreg : rows[i].PBenignMlp;
            Assert.True(Math.Abs(data[i * 2 + 1] - reference) <= 1e-5, $"row {i}: P(benign) {data[i * 2 + 1]} vs reference {reference}");
        }
    }

    [Fact]
    public async Task Breast_cancer_rows_one_request_each_with_flat_data_and_the_default_version()
    {
        var rows = TestData.BreastCancer().Take(20).ToList();
        foreach (var (row, i) in rows.Select((r, i) => (r, i)))
        {
            var (status, body) = await node.PostJsonAsync("/v2/models/breast-cancer-logreg/infer", new
            {
                id = $"row-{i}",
                inputs = new[] { new { name = "input", datatype = "FP32", shape = new[] { 1, 30 }, data = row.Features } },
            });
            Assert.Equal(200, status);
            Assert.Equal($"row-{i}", body!["id"]!.GetValue<string>());
            Assert.Equal(2, body["outputs"]!.AsArray().Count); // probabilities and logits when none are asked for
            var p = body["outputs"]!.AsArray().First(o => o!["name"]!.GetValue<string>() == "probabilities")!["data"]!.AsArray();
            Assert.InRange(Math.Abs(p[1]!.GetValue<double>() - row.PBenignLogreg), 0, 1e-5);
        }
    }

    [Fact]
    public async Task Ct_mr_tensors_over_binary_data_give_the_reference_labels_and_probabilities()
    {
        var images = TestData.Floats("images", "ct_mr_test_images_11x1x64x64.f32");
        var labels = TestData.Floats("images", "ct_mr_test_labels_11.f32");
        Assert.Equal(11 * 64 * 64, images.Length);

        var (json, binary) = await InferBinaryAsync("/v2/models/ct-mr-classifier/versions/1/infer", "image", [11, 1, 64, 64], images, "probabilities");

        var output = json["outputs"]![0]!;
        Assert.Equal(11 * 2 * 4, output["parameters"]!["binary_data_size"]!.GetValue<int>());
        var probabilities = MemoryMarshal.Cast<byte, float>(binary).ToArray();
        var recorded = JsonNode.Parse(File.ReadAllText(Path.Combine(Paths.SharedData, "..", "models", "imaging_metrics.json")))!["ct_mr_classifier"]!["per_file"]!.AsArray();
        var wrong = new List<int>();
        for (var i = 0; i < 11; i++)
        {
            var predicted = probabilities[i * 2 + 1] >= 0.5 ? 1 : 0;
            if (predicted != (int)labels[i])
            {
                wrong.Add(i);
            }
            // The P(MR) the training pipeline recorded for the same slice.
            Assert.InRange(Math.Abs(probabilities[i * 2 + 1] - recorded[i]![2]!.GetValue<double>()), 0, 1e-4);
        }
        // The model card says 10 of 11: the JPEG-lossless CT slice (index 4) is the known miss.
        Assert.Equal([4], wrong);
    }

    [Theory]
    [InlineData(64)]
    [InlineData(256)]
    public async Task Bone_segmenter_returns_a_mask_of_the_input_shape(int size)
    {
        var slices = TestData.Floats("images", "cranium_test_ct_22x1x64x64.f32");
        var bone = TestData.Floats("images", "cranium_test_bone_22x1x64x64.f32");
        const int k = 10;
        var ct = slices.AsSpan(k * 4096, 4096);
        var reference = bone.AsSpan(k * 4096, 4096);
        var input = size == 64 ? ct.ToArray() : TestData.Upscale(ct, 64, size / 64);
        var expected = size == 64 ? reference.ToArray() : TestData.Upscale(reference, 64, size / 64);

        var (json, binary) = await InferBinaryAsync("/v2/models/ct-bone-segmenter/infer", "image", [1, 1, size, size], input, "mask");

        Assert.Equal([1, 1, size, size], json["outputs"]![0]!["shape"]!.AsArray().Select(d => d!.GetValue<int>()));
        var mask = MemoryMarshal.Cast<byte, float>(binary);
        Assert.Equal(size * size, mask.Length);
        long both = 0, a = 0, b = 0;
        for (var i = 0; i < mask.Length; i++)
        {
            Assert.InRange(mask[i], 0f, 1f);
            var x = mask[i] >= 0.5f;
            var y = expected[i] >= 0.5f;
            a += x ? 1 : 0;
            b += y ? 1 : 0;
            both += x && y ? 1 : 0;
        }
        Assert.True(b > 0, "the reference slice has bone");
        Assert.True(2.0 * both / (a + b) > 0.9, $"Dice {2.0 * both / (a + b)}");
    }

    [Fact]
    public async Task Model_metadata_and_readiness_follow_the_protocol()
    {
        var (status, meta) = await node.GetJsonAsync("/v2/models/ct-mr-classifier");
        Assert.Equal(200, status);
        Assert.Equal("ct-mr-classifier", meta!["name"]!.GetValue<string>());
        Assert.Equal("onnxruntime_onnx", meta["platform"]!.GetValue<string>());
        Assert.Equal("image", meta["inputs"]![0]!["name"]!.GetValue<string>());
        Assert.Equal([-1, 1, 64, 64], meta["inputs"]![0]!["shape"]!.AsArray().Select(d => d!.GetValue<int>()));

        Assert.Equal(200, (await node.GetJsonAsync("/v2/models/ct-mr-classifier/versions/1/ready")).Status);
        Assert.Equal(200, (await node.GetJsonAsync("/v2/models/ct-mr-classifier/ready")).Status);
        Assert.Equal(200, (await node.GetJsonAsync("/v2/health/live")).Status);
        var (serverStatus, server) = await node.GetJsonAsync("/v2");
        Assert.Equal(200, serverStatus);
        Assert.Contains("binary_tensor_data", server!["extensions"]!.AsArray().Select(e => e!.GetValue<string>()));
    }

    [Fact]
    public async Task Every_fixed_width_datatype_round_trips_through_json_and_binary()
    {
        var types = new[] { TensorDatatype.FP32, TensorDatatype.FP64, TensorDatatype.INT32, TensorDatatype.INT64, TensorDatatype.UINT8, TensorDatatype.BOOL, TensorDatatype.INT8, TensorDatatype.INT16, TensorDatatype.UINT16, TensorDatatype.UINT32, TensorDatatype.UINT64, TensorDatatype.FP16 };
        var ios = types.Select(t => new OnnxBuilder.Io("x_" + t.ToString().ToLowerInvariant(), t, [null, 3])).ToArray();
        var manifest = Manifests.Identity("dtype-echo", "1", ios);
        var (uploaded, uploadBody) = await node.UploadAsync(manifest, OnnxBuilder.Identity(ios));
        Assert.True(uploaded == 201, uploadBody?.ToJsonString());
        Assert.Equal("Ready", (await node.DeployAsync("dtype-echo", "1"))["state"]!.GetValue<string>());

        object Values(TensorDatatype t) => t switch
        {
            TensorDatatype.BOOL => new object[] { true, false, true, false, false, true },
            TensorDatatype.FP32 or TensorDatatype.FP64 or TensorDatatype.FP16 => new object[] { 1.5, -2.25, 0, 3.5, 1e3, -0.5 },
            TensorDatatype.INT8 or TensorDatatype.INT16 or TensorDatatype.INT32 or TensorDatatype.INT64 => new object[] { -7, 0, 1, 127, -100, 42 },
            _ => new object[] { 0, 1, 2, 200, 255, 42 },
        };
        var (status, body) = await node.PostJsonAsync("/v2/models/dtype-echo/infer", new
        {
            inputs = types.Select(t => new { name = "x_" + t.ToString().ToLowerInvariant(), datatype = t.ToString(), shape = new[] { 2, 3 }, data = Values(t) }).ToArray(),
        });
        Assert.True(status == 200, body?.ToJsonString());
        foreach (var t in types)
        {
            var output = body!["outputs"]!.AsArray().Single(o => o!["name"]!.GetValue<string>() == "x_" + t.ToString().ToLowerInvariant() + "_out")!;
            Assert.Equal(t.ToString(), output["datatype"]!.GetValue<string>());
            var expected = (object[])Values(t);
            var actual = output["data"]!.AsArray();
            Assert.Equal(expected.Length, actual.Count);
            for (var i = 0; i < expected.Length; i++)
            {
                if (t == TensorDatatype.BOOL)
                {
                    Assert.Equal((bool)expected[i], actual[i]!.GetValue<bool>());
                }
                else
                {
                    Assert.Equal(Convert.ToDouble(expected[i], System.Globalization.CultureInfo.InvariantCulture), actual[i]!.GetValue<double>(), 6);
                }
            }
        }

        // Binary in, binary out: INT64 and BOOL bytes come back unchanged.
        var int64 = new long[] { long.MinValue, -1, 0, 1, 1L << 40, long.MaxValue };
        var bools = new byte[] { 1, 0, 0, 1, 1, 0 };
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            inputs = types.Select(t => new
            {
                name = "x_" + t.ToString().ToLowerInvariant(),
                datatype = t.ToString(),
                shape = new[] { 2, 3 },
                parameters = new { binary_data_size = 6 * t.ElementSize() },
            }),
            parameters = new { binary_data_output = true },
        });
        var payload = new MemoryStream();
        payload.Write(header);
        foreach (var t in types)
        {
            payload.Write(t switch
            {
                TensorDatatype.INT64 => MemoryMarshal.AsBytes(int64.AsSpan()).ToArray(),
                TensorDatatype.BOOL => bools,
                _ => new byte[6 * t.ElementSize()],
            });
        }
        using var content = new ByteArrayContent(payload.ToArray());
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await node.Http.PostAsync("/v2/models/dtype-echo/infer", content);
        Assert.Equal(200, (int)response.StatusCode);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        var jsonLength = int.Parse(response.Headers.GetValues("Inference-Header-Content-Length").Single(), System.Globalization.CultureInfo.InvariantCulture);
        var responseJson = JsonNode.Parse(bytes.AsSpan(0, jsonLength))!;
        var offset = jsonLength;
        foreach (var output in responseJson["outputs"]!.AsArray())
        {
            var size = output!["parameters"]!["binary_data_size"]!.GetValue<int>();
            var slice = bytes.AsSpan(offset, size);
            if (output["name"]!.GetValue<string>() == "x_int64_out")
            {
                Assert.Equal(int64, MemoryMarshal.Cast<byte, long>(slice).ToArray());
            }
            if (output["name"]!.GetValue<string>() == "x_bool_out")
            {
                Assert.Equal(bools, slice.ToArray());
            }
            offset += size;
        }
        Assert.Equal(bytes.Length, offset);
    }

    private async Task<(JsonNode Json, byte[] Binary)> InferBinaryAsync(string path, string input, int[] shape, float[] data, string output)
    {
        var header = JsonSerializer.SerializeToUtf8Bytes(new
        {
            inputs = new[] { new { name = input, datatype = "FP32", shape, parameters = new { binary_data_size = data.Length * 4 } } },
            outputs = new[] { new { name = output, parameters = new { binary_data = true } } },
        });
        var body = new byte[header.Length + data.Length * 4];
        header.CopyTo(body, 0);
        MemoryMarshal.AsBytes(data.AsSpan()).CopyTo(body.AsSpan(header.Length));
        using var content = new ByteArrayContent(body);
        content.Headers.ContentType = new MediaTypeHeaderValue("application/octet-stream");
        content.Headers.Add("Inference-Header-Content-Length", header.Length.ToString(System.Globalization.CultureInfo.InvariantCulture));
        using var response = await node.Http.PostAsync(path, content);
        var bytes = await response.Content.ReadAsByteArrayAsync();
        Assert.True(response.IsSuccessStatusCode, Encoding.UTF8.GetString(bytes));
        var jsonLength = int.Parse(response.Headers.GetValues("Inference-Header-Content-Length").Single(), System.Globalization.CultureInfo.InvariantCulture);
        return (JsonNode.Parse(bytes.AsSpan(0, jsonLength))!, bytes[jsonLength..]);
    }
}
