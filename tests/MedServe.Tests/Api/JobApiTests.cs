using System.Globalization;
using System.Net;
using System.Net.Http.Json;
using System.Text;
using System.Text.Json.Nodes;
using MedServe.Tests.Support;

namespace MedServe.Tests.Api;

/// <summary>
/// Async jobs on a real node: a CSV of real patient records and a set of real CT/MR tensors run through the job
/// stream, report progress, and download as JSON and CSV; an item with bad values fails alone; cancel and delete
/// work; bad submissions are refused naming the field.
/// </summary>
[Collection(NodeCollection.Name)]
public sealed class JobApiTests(NodeFixture node)
{
    private static string BreastCancerCsv => File.ReadAllText(Paths.Data("tabular", "breast_cancer_test.csv"));

    private static readonly string FeatureColumns = string.Join(',', BreastCancerCsv.Split('\n')[0].Split(',').Take(30));

    private async Task<JsonNode> SubmitCsvAsync(string csv, string query)
    {
        using var response = await node.Http.PostAsync("/api/jobs?" + query, new StringContent(csv, Encoding.UTF8, "text/csv"));
        var body = await NodeFixture.ReadJsonAsync(response);
        Assert.True(response.StatusCode == HttpStatusCode.Accepted, $"submit answered {(int)response.StatusCode}: {body}");
        Assert.Equal($"/api/jobs/{body!["id"]}", response.Headers.Location!.ToString());
        return body;
    }

    [Fact]
    public async Task A_csv_of_patient_records_runs_as_a_job_and_downloads_as_json_and_csv()
    {
        var rows = TestData.BreastCancer();
        // Three copies of the held-out set, with ids, so the job spans many deliveries.
        var lines = BreastCancerCsv.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        var csv = new StringBuilder("patient," + lines[0] + "\n");
        for (var copy = 0; copy < 3; copy++)
        {
            for (var r = 1; r < lines.Length; r++)
            {
                csv.Append(CultureInfo.InvariantCulture, $"p{copy}-{r - 1},{lines[r]}\n");
            }
        }
        // The CSV carries an id column named 'patient', not 'id': choose the feature columns and keep row numbers as ids.
        var job = await SubmitCsvAsync(csv.ToString(), $"model=breast-cancer-logreg&columns={Uri.EscapeDataString(FeatureColumns)}&outputs=probabilities");
        var id = job["id"]!.GetValue<string>();
        Assert.Equal(3 * rows.Count, job["total"]!.GetValue<int>());
        Assert.Equal("1", job["version"]!.GetValue<string>());

        var done = await JobWait.ForStateAsync(node.Http, id, "Completed");
        Assert.Equal(3 * rows.Count, done["succeeded"]!.GetValue<int>());
        Assert.Equal(0, done["failed"]!.GetValue<int>());
        Assert.Null(done["eta_seconds"]);

        var results = await NodeFixture.SuccessJsonAsync(node.Http.GetAsync($"/api/jobs/{id}/results"));
        var items = results["results"]!.AsArray();
        Assert.Equal(3 * rows.Count, items.Count);
        Assert.Equal(3 * rows.Count, items.Select(i => i!["id"]!.GetValue<string>()).Distinct().Count());
        for (var k = 0; k < items.Count; k++)
        {
            var outputs = items[k]!["outputs"]!.AsArray();
            Assert.Equal("probabilities", Assert.Single(outputs)!["name"]!.GetValue<string>());
            Assert.Equal(rows[k % rows.Count].PBenignLogreg, outputs[0]!["data"]![1]!.GetValue<double>(), 4);
        }

        var table = await node.Http.GetStringAsync($"/api/jobs/{id}/results?format=csv");
        var csvLines = table.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal("id,error,probabilities_0,probabilities_1", csvLines[0]);
        Assert.Equal(3 * rows.Count + 1, csvLines.Length);
        var first = csvLines[1].Split(',');
        Assert.Equal(rows[0].PBenignLogreg, double.Parse(first[3], CultureInfo.InvariantCulture), 4);

        var listed = (await node.GetJsonAsync("/api/jobs")).Body!.AsArray();
        Assert.Contains(listed, j => j!["id"]!.GetValue<string>() == id);
    }

    [Fact]
    public async Task The_held_out_csv_as_it_is_runs_with_columns_matched_to_the_features_by_name()
    {
        var rows = TestData.BreastCancer();
        // The file as published: the 30 features named as in the manifest, then label and two earlier scores, no id.
        var job = await SubmitCsvAsync(BreastCancerCsv, "model=breast-cancer-logreg&outputs=probabilities");
        var id = job["id"]!.GetValue<string>();
        Assert.Equal(rows.Count, job["total"]!.GetValue<int>());

        var done = await JobWait.ForStateAsync(node.Http, id, "Completed");
        Assert.Equal(143, done["succeeded"]!.GetValue<int>() + done["failed"]!.GetValue<int>());
        Assert.Equal(143, done["succeeded"]!.GetValue<int>());

        var results = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync($"/api/jobs/{id}/results")))["results"]!.AsArray();
        Assert.Equal(rows.Count, results.Count);
        foreach (var result in results)
        {
            // Items without an id column are numbered by row from 1.
            var row = int.Parse(result!["id"]!.GetValue<string>(), CultureInfo.InvariantCulture) - 1;
            var benign = result["outputs"]!.AsArray().Single()!["data"]![1]!.GetValue<double>();
            Assert.True(Math.Abs(rows[row].PBenignLogreg - benign) <= 1e-4, $"row {row}: p_benign_logreg {rows[row].PBenignLogreg}, served {benign}");
        }
    }

    [Fact]
    public async Task A_set_of_ct_mr_tensors_runs_as_a_job_and_an_item_with_bad_values_fails_alone()
    {
        var images = TestData.Floats("images", "ct_mr_test_images_11x1x64x64.f32");
        var labels = TestData.Floats("images", "ct_mr_test_labels_11.f32");
        var items = Enumerable.Range(0, 11).Select(i => (object)new
        {
            id = $"slice-{i}",
            inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { 1, 1, 64, 64 }, data = images.AsSpan(i * 4096, 4096).ToArray() } },
        }).Append(new
        {
            id = "broken",
            inputs = new[] { new { name = "image", datatype = "FP32", shape = new[] { 1, 1, 64, 64 }, data = Enumerable.Repeat(0f, 4096).Select((v, i) => i == 7 ? float.NaN : v).Select(v => float.IsNaN(v) ? (object)"NaN" : v).ToArray() } },
        }).ToArray();
        using var response = await node.Http.PostAsJsonAsync("/api/jobs", new { model = "ct-mr-classifier", id = "ctmr-" + Guid.NewGuid().ToString("N")[..8], items });
        Assert.Equal(HttpStatusCode.Accepted, response.StatusCode);
        var id = (await NodeFixture.ReadJsonAsync(response))!["id"]!.GetValue<string>();

        var done = await JobWait.ForStateAsync(node.Http, id, "Completed");
        Assert.Equal(11, done["succeeded"]!.GetValue<int>());
        Assert.Equal(1, done["failed"]!.GetValue<int>());

        var results = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync($"/api/jobs/{id}/results?format=json")))["results"]!.AsArray();
        var broken = results.Single(r => r!["id"]!.GetValue<string>() == "broken")!;
        Assert.Contains("NaN", broken["error"]!.GetValue<string>(), StringComparison.Ordinal);
        var correct = 0;
        for (var i = 0; i < 11; i++)
        {
            var probabilities = results.Single(r => r!["id"]!.GetValue<string>() == $"slice-{i}")!["outputs"]!.AsArray()
                .Single(o => o!["name"]!.GetValue<string>() == "probabilities")!["data"]!.AsArray().Select(v => v!.GetValue<double>()).ToArray();
            correct += (probabilities[1] > probabilities[0] ? 1 : 0) == (int)labels[i] ? 1 : 0;
        }
        Assert.True(correct >= 10, $"the classifier got {correct} of 11 held-out slices right through the job path");
    }

    [Fact]
    public async Task A_job_can_be_cancelled_and_deleted()
    {
        var lines = BreastCancerCsv.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        // Big enough that the cancel lands while it runs: jobs answer tens of thousands of rows a second, and 20,000
        // rows once finished between the submit's answer and the cancel.
        const int Rows = 100_000;
        var csv = new StringBuilder(lines[0] + "\n");
        for (var r = 0; r < Rows; r++)
        {
            csv.Append(lines[1 + (r % (lines.Length - 1))]).Append('\n');
        }
        var job = await SubmitCsvAsync(csv.ToString(), $"model=breast-cancer-logreg&columns={Uri.EscapeDataString(FeatureColumns)}");
        var id = job["id"]!.GetValue<string>();

        var cancelled = await NodeFixture.SuccessJsonAsync(node.Http.PostAsync($"/api/jobs/{id}/cancel", null));
        Assert.Equal("Cancelled", cancelled["state"]!.GetValue<string>());
        var answered = cancelled["succeeded"]!.GetValue<int>() + cancelled["failed"]!.GetValue<int>();
        Assert.True(answered < Rows, "cancelled before the end");
        await Task.Delay(500);
        var later = (await node.GetJsonAsync($"/api/jobs/{id}")).Body!;
        Assert.Equal("Cancelled", later["state"]!.GetValue<string>());

        using var deleted = await node.Http.DeleteAsync($"/api/jobs/{id}");
        Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
        Assert.Equal(404, (await node.GetJsonAsync($"/api/jobs/{id}")).Status);
        Assert.Equal(404, (await node.GetJsonAsync($"/api/jobs/{id}/results")).Status);
    }

    [Fact]
    public async Task A_submit_without_an_id_sent_twice_runs_once()
    {
        var csv = "id," + BreastCancerCsv.Split('\n')[0] + "\n" + string.Join('\n', BreastCancerCsv.Split('\n', StringSplitOptions.RemoveEmptyEntries).Skip(1).Take(20)
            .Select((line, i) => $"once-{Guid.NewGuid():N}-{i},{line}")) + "\n";
        var query = $"model=breast-cancer-logreg&columns={Uri.EscapeDataString(FeatureColumns)}";
        var first = await SubmitCsvAsync(csv, query);
        var second = await SubmitCsvAsync(csv, query);
        Assert.Equal(first["id"]!.GetValue<string>(), second["id"]!.GetValue<string>());
        var id = first["id"]!.GetValue<string>();
        Assert.Equal(20, (await JobWait.ForStateAsync(node.Http, id, "Completed"))["succeeded"]!.GetValue<int>());
        var listed = (await node.GetJsonAsync("/api/jobs")).Body!.AsArray();
        Assert.Single(listed, j => j!["id"]!.GetValue<string>() == id);
    }

    [Fact]
    public async Task Bad_submissions_are_refused_naming_the_field()
    {
        var csv = BreastCancerCsv;
        async Task<(int Status, JsonNode? Body)> Post(string query, string body, string type)
        {
            using var response = await node.Http.PostAsync("/api/jobs" + query, new StringContent(body, Encoding.UTF8, type));
            return ((int)response.StatusCode, await NodeFixture.ReadJsonAsync(response));
        }

        var unknown = await Post("?model=no-such-model", csv, "text/csv");
        Assert.Equal(404, unknown.Status);

        // Without the 'worst area' column (the 24th) and no columns chosen: refused naming the missing feature.
        var withoutWorstArea = string.Join('\n', csv.Split('\n').Select(line => line.Length == 0 ? line : string.Join(',', line.Split(',').Where((_, i) => i != 23))));
        var missing = await Post("?model=breast-cancer-logreg", withoutWorstArea, "text/csv");
        Assert.Equal(400, missing.Status);
        Assert.Equal("worst area", missing.Body!["field"]!.GetValue<string>());
        Assert.Contains("'worst area'", missing.Body!["detail"]!.GetValue<string>(), StringComparison.Ordinal);

        // A cell that is not a number fails its own row (named by CSV line and feature), not the job: the other rows run.
        var text = await Post($"?model=breast-cancer-logreg&columns={Uri.EscapeDataString(FeatureColumns)}", csv.Replace("\n17.99,", "\nabc,", StringComparison.Ordinal) + "\nabc" + new string(',', 32) + "\n", "text/csv");
        Assert.True(text.Status == 202, text.Body?.ToJsonString());
        var textJob = text.Body!["id"]!.GetValue<string>();
        var textDone = await JobWait.ForStateAsync(node.Http, textJob, "Completed");
        Assert.Equal(2, textDone["failed"]!.GetValue<int>());
        Assert.Equal(TestData.BreastCancer().Count - 1, textDone["succeeded"]!.GetValue<int>());
        var textResults = (await NodeFixture.SuccessJsonAsync(node.Http.GetAsync($"/api/jobs/{textJob}/results")))["results"]!.AsArray();
        Assert.Equal("CSV line 3: 'mean radius' is not a number", textResults[1]!["error"]!.GetValue<string>());
        var last = textResults[^1]!["error"]!.GetValue<string>();
        Assert.StartsWith("CSV line ", last, StringComparison.Ordinal);
        Assert.Contains(": 'mean radius' is not a number; 'mean texture' is missing", last, StringComparison.Ordinal);
        Assert.DoesNotContain("abc", last, StringComparison.Ordinal);
        Assert.Null(textResults[0]!["error"]);

        var noModel = await Post("", csv, "text/csv");
        Assert.Equal("model", noModel.Body!["field"]!.GetValue<string>());

        var kind = await Post("?model=breast-cancer-logreg", "x", "text/plain");
        Assert.Equal("content-type", kind.Body!["field"]!.GetValue<string>());

        var emptyItems = await Post("", """{"model": "diabetes-linear", "items": []}""", "application/json");
        Assert.Equal("items", emptyItems.Body!["field"]!.GetValue<string>());

        var badTensor = await Post("", """{"model": "diabetes-linear", "items": [{"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [1]}]}]}""", "application/json");
        Assert.Equal(400, badTensor.Status);
        Assert.StartsWith("items[0]", badTensor.Body!["field"]!.GetValue<string>(), StringComparison.Ordinal);

        var body = """{"model": "diabetes-linear", "id": "twice", "items": [{"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [61, 1, 25.8, 90, 280, 195.4, 55, 5, 4.9972, 90]}]}]}""";
        var first = await Post("", body, "application/json");
        Assert.True(first.Status is 202 or 409);
        // A retry of the same submit answers the same job; other content under that id is a conflict naming it.
        var second = await Post("", body, "application/json");
        Assert.Equal(202, second.Status);
        Assert.Equal("twice", second.Body!["id"]!.GetValue<string>());
        var other = await Post("", body.Replace("\"id\": \"a\"", "\"id\": \"b\"", StringComparison.Ordinal), "application/json");
        Assert.Equal(409, other.Status);
        Assert.Equal("id", other.Body!["field"]!.GetValue<string>());

        var duplicateItems = await Post("", """{"model": "diabetes-linear", "items": [{"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [1,1,1,1,1,1,1,1,1,1]}]}, {"id": "a", "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 10], "data": [1,1,1,1,1,1,1,1,1,1]}]}]}""", "application/json");
        Assert.Equal("items[1].id", duplicateItems.Body!["field"]!.GetValue<string>());
    }
}
