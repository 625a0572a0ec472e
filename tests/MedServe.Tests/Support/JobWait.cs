using System.Text.Json.Nodes;

namespace MedServe.Tests.Support;

/// <summary>
/// Waits for a job to reach a state over the HTTP API (the one home for it in the tests). The API offers no wait on
/// a job's state, so this reads <c>/api/jobs/{id}</c> every 100 ms, for at most a minute.
/// </summary>
public static class JobWait
{
    public static async Task<JsonNode> ForStateAsync(HttpClient http, string id, string state)
    {
        JsonNode? job = null;
        for (var i = 0; i < 600; i++)
        {
            job = JsonNode.Parse(await http.GetStringAsync($"/api/jobs/{id}"))!;
            if (job["state"]!.GetValue<string>() == state)
            {
                return job;
            }
            await Task.Delay(100);
        }
        throw new Xunit.Sdk.XunitException($"job {id} did not reach {state}: {job}");
    }
}
